"""xlt_plugin: cross-language transfer learning for CTC speech recognition.

Public names are imported lazily, so ``xlt synth`` does not pay for torch.

Example
-------
>>> import xlt_plugin
>>> xlt_plugin.remap_ctc_head.__name__
'remap_ctc_head'
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "QuartzNet": "xlt_plugin.lobes.quartznet",
    "token_map": "xlt_plugin.remap",
    "remap_ctc_head": "xlt_plugin.remap",
    "RemapHeadHook": "xlt_plugin.remap",
    "RemapReport": "xlt_plugin.remap",
    "normalize_text": "xlt_plugin.tokens",
    "build_char_encoder": "xlt_plugin.tokens",
    "load_tokens": "xlt_plugin.tokens",
    "freeze": "xlt_plugin.freeze",
    "StagedUnfreezing": "xlt_plugin.freeze",
    "layerwise_param_groups": "xlt_plugin.freeze",
    "save_pretrained": "xlt_plugin.pretrained",
    "load_pretrained": "xlt_plugin.pretrained",
    "transfer_weights": "xlt_plugin.pretrained",
    "CTCTransferBrain": "xlt_plugin.brain",
    "prepare_common_voice": "xlt_plugin.data.commonvoice",
    "synthesize_corpus": "xlt_plugin.synth.corpus",
    "transcribe_files": "xlt_plugin.decode.transcribe",
    "export_run": "xlt_plugin.export.hub",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'xlt_plugin' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
