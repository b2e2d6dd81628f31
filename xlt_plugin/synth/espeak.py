"""A small ctypes binding to the espeak-ng speech synthesizer.

The library and its voice data come from the ``espeakng-loader`` wheel, so
nothing has to be installed on the system. Only what the embedded corpus
needs is bound: initialise once per process, choose a voice, set prosody
parameters, and synthesize UTF-8 text to a float32 numpy array.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading

import numpy as np

from xlt_plugin.extras import require

__all__ = ["Espeak", "EspeakError", "ESPEAK_SAMPLE_RATE"]

#: espeak-ng always synthesizes at this rate.
ESPEAK_SAMPLE_RATE = 22050

# Constants of speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EE_OK = 0
_PARAMETERS = {
    "rate": 1,
    "volume": 2,
    "pitch": 3,
    "range": 4,
    "wordgap": 7,
}
# Sensible ranges, documented in speak_lib.h; espeak clips silently, so we
# reject out-of-range values instead of producing a surprise.
_PARAMETER_RANGES = {
    "rate": (80, 450),
    "volume": (0, 200),
    "pitch": (0, 100),
    "range": (0, 100),
    "wordgap": (0, 100),
}

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _dlclose(handle: int) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary
    close(handle)


def _languages(field: int | None) -> list[str]:
    """Decode espeak_VOICE.languages: (priority byte, name, NUL) repeated."""
    languages: list[str] = []
    offset = 0
    while field and ctypes.string_at(field + offset, 1) != b"\0":
        name = ctypes.string_at(field + offset + 1)  # reads up to the NUL
        languages.append(name.decode("utf-8"))
        offset += len(name) + 2
    return languages


class _Voice(ctypes.Structure):
    # espeak_VOICE of speak_lib.h.
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class EspeakError(RuntimeError):
    """An espeak-ng call failed (library missing, unknown voice, bad value)."""


def _private_copy(library_path: str) -> str:
    """Copy the library to a private file, once per process tree.

    ``reset`` unloads and reloads the library to get fresh static state; that
    only works when nothing else in the process holds the same file open, so
    we load a copy nobody else knows about.
    """
    key = os.path.realpath(library_path)
    if key not in _COPIES:
        folder = tempfile.mkdtemp(prefix="xlt-espeak-")
        target = os.path.join(folder, os.path.basename(library_path))
        shutil.copyfile(library_path, target)
        _COPIES[key] = target
        owner = os.getpid()

        def cleanup() -> None:
            # Forked children share the copy; only its creator removes it.
            if os.getpid() == owner:
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(cleanup)
    return _COPIES[key]


_COPIES: dict[str, str] = {}


class Espeak:
    """espeak-ng synthesizer, one per process.

    ``Espeak()`` always returns the same object within one process (espeak-ng
    keeps global state, so two instances could not differ anyway). A process
    forked from one that already initialised espeak-ng inherits that state.

    espeak-ng carries state from one utterance to the next (the phase of its
    pitch flutter and of the waveform), so the same call can give a few
    samples more or less depending on what was spoken before. ``reset()``
    reloads the library and returns to the state right after initialisation:
    a fixed sequence of calls after ``reset()`` always gives the same audio.

    Arguments
    ---------
    library_path : str, optional
        Path of ``libespeak-ng.so``; default: the one of ``espeakng-loader``.
    data_path : str, optional
        Path of ``espeak-ng-data``; default: the one of ``espeakng-loader``.

    Example
    -------
    >>> tts = Espeak()
    >>> tts.set_voice("en-us+m3")
    >>> tts.set_parameters(rate=175, pitch=50)
    >>> audio = tts.synthesize("Hello world.")
    >>> audio.dtype, tts.sample_rate
    (dtype('float32'), 22050)
    >>> 0.3 < len(audio) / tts.sample_rate < 3.0
    True
    """

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __new__(cls, library_path: str | None = None, data_path: str | None = None):
        with cls._lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._init(library_path, data_path)
                cls._instance = instance
        return cls._instance

    def __init__(self, library_path: str | None = None, data_path: str | None = None):
        # All work happens once, in __new__.
        pass

    def _init(self, library_path: str | None, data_path: str | None) -> None:
        if library_path is None or data_path is None:
            espeakng_loader = require("espeakng_loader", "espeak-ng speech synthesis")
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        if not os.path.isfile(library_path):
            raise EspeakError(f"espeak-ng library not found at {library_path}")
        self.data_path = data_path
        self._library_path = _private_copy(library_path)
        self._chunks: list[np.ndarray] = []
        # Keep the callback object referenced: espeak only holds a raw pointer.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self._synth_lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        lib = ctypes.CDLL(self._library_path)
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        # Output 2 (synchronous) hands samples to the callback; 0 (playback)
        # would hand it nothing and report no error.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode("utf-8"), 0
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data at {self.data_path}")
        self.sample_rate = rate
        self._lib = lib
        lib.espeak_SetSynthCallback(self._callback)
        self.voice: str | None = None
        self.seed(0)

    def seed(self, value: int) -> None:
        """Seed espeak-ng's noise generator (breathy variants use it).

        espeak_Initialize seeds it with the time of day; a fixed seed makes
        the output repeatable.

        Arguments
        ---------
        value : int
            The seed (taken modulo 2^31).
        """
        setter = getattr(self._lib, "espeak_ng_SetRandSeed", None)
        if setter is not None:
            setter.argtypes = [ctypes.c_long]
            setter.restype = None
            setter(int(value) % 2**31)

    def reset(self, seed: int = 0) -> None:
        """Reload espeak-ng, back to its state right after initialisation.

        Takes a few milliseconds (the next ``set_voice`` reloads its
        dictionary). The voice and parameters return to espeak's defaults.

        Arguments
        ---------
        seed : int
            Seed of espeak-ng's noise generator (see ``seed``).

        Example
        -------
        >>> tts = Espeak()
        >>> def say():
        ...     tts.set_voice("es+f2")
        ...     return tts.synthesize("Hola, ¿qué tal?")
        >>> tts.reset()
        >>> first, second = say(), say()
        >>> tts.reset()
        >>> bool(np.array_equal(first, say()))
        True
        """
        with self._synth_lock:
            self._lib.espeak_Terminate()
            handle = self._lib._handle
            del self._lib
            # Unloading drops every static variable of the library, so the
            # next load starts from scratch.
            _dlclose(handle)
            self._load()
            self.seed(seed)

    def _on_samples(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue synthesis

    def list_voices(self) -> dict[str, list[str]]:
        """Return the installed voices and the language codes each one speaks.

        Returns
        -------
        dict
            Voice file identifier (relative to ``espeak-ng-data/lang``, e.g.
            ``gmw/en-US``) -> language codes (``["en-us", "en"]``).

        Example
        -------
        >>> Espeak().list_voices()["gmw/en-US"]
        ['en-us', 'en']
        """
        with self._synth_lock:
            voices = self._lib.espeak_ListVoices(None)
            found = {}
            i = 0
            while voices[i]:
                voice = voices[i].contents
                found[voice.identifier.decode("utf-8")] = _languages(voice.languages)
                i += 1
        return found

    def _known_names(self) -> set[str]:
        if not hasattr(self, "_names"):
            names = set()
            for identifier, languages in self.list_voices().items():
                names.add(identifier.lower())
                names.add(identifier.rsplit("/", 1)[-1].lower())
                names.update(languages)
            self._names = names
        return self._names

    def has_voice(self, name: str) -> bool:
        """Whether ``name`` (e.g. ``"en-us"`` or ``"es+f2"``) names a voice.

        espeak-ng itself accepts some unknown names (it falls back to a
        language it guesses), so the name must be a voice file, or a language
        code of one, and the variant a file of ``voices/!v``.

        Arguments
        ---------
        name : str
            A voice or language name, optionally with ``+variant``.

        Returns
        -------
        bool
            True when the voice exists.

        Example
        -------
        >>> tts = Espeak()
        >>> tts.has_voice("de+f2"), tts.has_voice("klingon"), tts.has_voice("de+zz")
        (True, False, False)
        """
        base, _, variant = name.partition("+")
        if base.lower() not in self._known_names():
            return False
        if variant and not os.path.isfile(
            os.path.join(self.data_path, "voices", "!v", variant)
        ):
            return False
        return True

    def set_voice(self, name: str) -> None:
        """Select a voice by name, e.g. ``"en-us"``, ``"cmn"``, ``"es+f2"``.

        Arguments
        ---------
        name : str
            A voice or language name, optionally with a ``+variant``.

        Raises
        ------
        EspeakError
            If espeak-ng does not know the voice or the variant.
        """
        if not self.has_voice(name):
            raise EspeakError(
                f"espeak-ng has no voice {name!r}; voices live in {self.data_path}"
                "/lang (name them like 'en-us', 'de', 'cmn') and variants in "
                "voices/!v (like '+m3', '+f2')"
            )
        with self._synth_lock:
            status = self._lib.espeak_SetVoiceByName(name.encode("utf-8"))
            if status != _EE_OK:
                raise EspeakError(f"espeak_SetVoiceByName({name!r}) failed ({status})")
            self.voice = name

    def set_parameters(self, **values: int) -> None:
        """Set prosody parameters; they stay until changed.

        Arguments
        ---------
        **values : int
            Any of ``rate`` (words per minute, 80-450), ``volume`` (0-200),
            ``pitch`` (0-100), ``range`` (pitch range, 0-100) and ``wordgap``
            (pause between words, in units of 10 ms).

        Raises
        ------
        EspeakError
            For an unknown parameter or a value out of range.
        """
        for key, value in values.items():
            if key not in _PARAMETERS:
                raise EspeakError(
                    f"unknown espeak parameter {key!r}; use one of "
                    f"{sorted(_PARAMETERS)}"
                )
            low, high = _PARAMETER_RANGES[key]
            if not low <= int(value) <= high:
                raise EspeakError(f"espeak {key}={value} is outside [{low}, {high}]")
            with self._synth_lock:
                self._lib.espeak_SetParameter(_PARAMETERS[key], int(value), 0)

    def synthesize(self, text: str) -> np.ndarray:
        """Synthesize text with the current voice and parameters.

        Arguments
        ---------
        text : str
            The text to speak (any language the voice reads).

        Returns
        -------
        numpy.ndarray
            float32 samples in [-1, 1] at ``self.sample_rate`` (22050 Hz).
        """
        data = text.encode("utf-8") + b"\0"
        with self._synth_lock:
            self._chunks = []
            err = self._lib.espeak_Synth(
                data,
                len(data),
                0,
                _POS_CHARACTER,
                0,
                _ESPEAK_CHARS_UTF8,
                None,
                None,
            )
            if err != _EE_OK:
                raise EspeakError(f"espeak_Synth failed ({err}) on text {text!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0
