"""A real Smalltalk VM for the tests: Debian's `squeak-vm` running a copy of the Squeak
image in Debian's `scratch`, headless, serving its own VM figures over HTTP on loopback.

Scratch's image ignores `.st` arguments, so the copy is patched (pure functions below,
bytes in, bytes out): its `SystemDictionary>>readDocumentFile`, which the image runs on
every start-up, is rewritten in place to evaluate the Smalltalk file named by the first
argument after the image name. `tests/smalltalk/vmstats.st` is that file: it compiles
`vmstats-methods.st` into the image, which then answers HTTP on 127.0.0.1 with figures
computed in-image from the live `Smalltalk getVMParameters` (that file's header lists
the endpoints; `/vm/raw` and `/vm/answered` are the tests' oracle).

Image layout (classic 32-bit Squeak, format 6502): a 64-byte header of little-endian
words (version, header size, data size, old base address, special objects oop), then
objects with 1-, 2- or 3-word headers, the low two bits of the first word saying which
(2 marks a free chunk). An oop is the address of an object's base header word.
"""

from __future__ import annotations

import functools
import glob
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port, log_tail, stop_process, wait_for_service

__all__ = [
    "IMAGE",
    "VM_GLOB",
    "Answered",
    "Heap",
    "ImageError",
    "ImageHeader",
    "MethodPatch",
    "SqueakRequestError",
    "SqueakStartupError",
    "SqueakVM",
    "find_vm",
    "method_header",
    "parse_answered",
    "parse_raw",
    "patch_read_document_file",
    "patched_image",
    "plan_patch",
    "read_header",
    "run_squeak",
]

IMAGE = Path("/usr/share/scratch/Scratch.image")
VM_GLOB = "/usr/lib/squeak/*/squeakvm"
SMALLTALK_DIR = Path(__file__).parent / "smalltalk"
IMAGE_FORMAT = 6502  # 32-bit, pre-closure

# Special objects (0-based indices into the special objects array).
_NIL, _SMALLTALK, _SPECIAL_SELECTORS, _COMPACT_CLASSES = 0, 8, 23, 28
# Object header fields of the base header word.
_TYPE_3_WORDS, _TYPE_2_WORDS, _TYPE_FREE, _TYPE_1_WORD = 0, 1, 2, 3
_FORMAT_BYTES, _FORMAT_METHOD = 8, 12
# A class's second instance variable is its method dictionary; a MethodDictionary
# has two named slots (tally, array of methods) before its selectors.
_CLASS_METHOD_DICT = 1
_MD_ARRAY, _MD_FIRST_KEY = 1, 2


class ImageError(ValueError):
    """An image this patcher cannot read or patch; the message says why."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """The image file's header words that locate its objects."""

    version: int
    header_size: int
    data_size: int
    old_base: int
    special_objects: int


def read_header(image: bytes) -> ImageHeader:
    """The header of a 32-bit little-endian classic image; raises `ImageError`."""
    if len(image) < 64:
        raise ImageError(f"{len(image)} bytes: shorter than an image header")
    header = ImageHeader(*struct.unpack_from("<5I", image, 0))
    if header.version != IMAGE_FORMAT:
        raise ImageError(f"image format {header.version}, not {IMAGE_FORMAT} (32-bit classic)")
    if header.header_size + header.data_size > len(image):
        raise ImageError(f"header says {header.data_size} bytes of objects; the file is shorter")
    return header


class Heap:
    """Read access to an image's objects by oop."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.header = read_header(image)

    def offset(self, oop: int) -> int:
        """File offset of an object's base header."""
        offset = oop - self.header.old_base + self.header.header_size
        if not self.header.header_size <= offset < self.header.header_size + self.header.data_size:
            raise ImageError(f"oop {oop:#x} is outside the image")
        return offset

    def word(self, offset: int) -> int:
        return int(struct.unpack_from("<I", self.image, offset)[0])

    def base_header(self, oop: int) -> int:
        return self.word(self.offset(oop))

    def format(self, oop: int) -> int:
        return (self.base_header(oop) >> 8) & 0xF

    def byte_size(self, oop: int) -> int:
        """Bytes of the object from its base header on (the size field)."""
        header = self.base_header(oop)
        if header & 3 == _TYPE_3_WORDS:
            return self.word(self.offset(oop) - 8) & ~3
        return header & 0xFC

    def slot_count(self, oop: int) -> int:
        return (self.byte_size(oop) - 4) // 4

    def slot(self, oop: int, index: int) -> int:
        if not 0 <= index < self.slot_count(oop):
            raise ImageError(f"slot {index} of {oop:#x} is out of bounds")
        return self.word(self.offset(oop) + 4 + 4 * index)

    def bytes_of(self, oop: int) -> bytes:
        """The bytes of a byte object (its unused tail bytes left out)."""
        fmt = self.format(oop)
        if fmt < _FORMAT_BYTES:
            return b""
        start = self.offset(oop) + 4
        return self.image[start : start + self.byte_size(oop) - 4 - (fmt & 3)]

    def class_of(self, oop: int) -> int:
        header = self.base_header(oop)
        compact = (header >> 12) & 0x1F
        if compact:
            return self.slot(self.special(_COMPACT_CLASSES), compact - 1)
        return self.word(self.offset(oop) - 4) & ~3

    def special(self, index: int) -> int:
        return self.slot(self.header.special_objects, index)

    def oops(self) -> Iterator[int]:
        """Every object in address order (free chunks skipped)."""
        start = self.header.header_size
        offset, end = start, start + self.header.data_size
        while offset < end:
            header = self.word(offset)
            kind = header & 3
            if kind == _TYPE_FREE:
                size, base = header & ~3, None
            elif kind == _TYPE_3_WORDS:
                base = offset + 8
                size = 8 + (self.word(offset) & ~3)
            elif kind == _TYPE_2_WORDS:
                base = offset + 4
                size = 4 + (self.word(base) & 0xFC)
            else:
                base, size = offset, header & 0xFC
            if size <= 0:
                raise ImageError(f"object of size 0 at file offset {offset}")
            if base is not None:
                yield base - start + self.header.old_base
            offset += size
        if offset != end:
            raise ImageError("the last object runs past the end of the image data")


@dataclass(frozen=True, slots=True)
class MethodPatch:
    """Where a method lies in the file and what replaces its body."""

    offset: int  # file offset of the method header word (first slot)
    length: int  # bytes from there to the start of the source-pointer trailer
    body: bytes  # new method header, literals and bytecodes, padded to `length`


# The rewritten readDocumentFile, as Squeak's (pre-closure) compiler would give:
#   Compiler evaluate: (FileStream readOnlyFileNamed: (self getSystemAttribute: 2))
#       contentsOfEntireFile
_GLOBALS = ("Compiler", "FileStream")  # literals 0, 1: association (global binding)
_SELECTORS = ("getSystemAttribute:", "readOnlyFileNamed:", "contentsOfEntireFile", "evaluate:")
_BYTECODES = bytes(
    [
        0x40,  # push literal variable 0 (Compiler)
        0x41,  # push literal variable 1 (FileStream)
        0x70,  # push self (Smalltalk, the receiver)
        0x77,  # push constant 2
        0xE2,  # send literal 2 (getSystemAttribute:), 1 argument
        0xE3,  # send literal 3 (readOnlyFileNamed:), 1 argument
        0xD4,  # send literal 4 (contentsOfEntireFile), 0 arguments
        0xE5,  # send literal 5 (evaluate:), 1 argument
        0x87,  # pop
        0x78,  # return self
    ]
)
_RETURN_SELF = 0x78
_TRAILER = 4  # a 4-byte source pointer ends every method in this image


def method_header(literals: int, temps: int = 0, args: int = 0) -> int:
    """A CompiledMethod header (as a SmallInteger oop) with no primitive and a small frame."""
    value = (args << 24) | (temps << 18) | (literals << 9)
    return (value << 1) | 1


def find_symbols(heap: Heap, names: tuple[str, ...]) -> dict[str, int]:
    """The interned Symbol of each name; raises `ImageError` for one that is missing."""
    symbol_class = _symbol_class(heap)
    wanted = {name.encode("ascii"): name for name in names}
    found: dict[str, int] = {}
    for oop in heap.oops():
        if (
            _FORMAT_BYTES <= heap.format(oop) < _FORMAT_METHOD
            and heap.class_of(oop) == symbol_class
        ):
            name = wanted.get(heap.bytes_of(oop))
            if name is not None:
                found.setdefault(name, oop)
    missing = [name for name in names if name not in found]
    if missing:
        raise ImageError(f"symbols not in the image: {', '.join(missing)}")
    return found


def _symbol_class(heap: Heap) -> int:
    """Symbol: the class of the first special selector (#+)."""
    special_selectors = heap.special(_SPECIAL_SELECTORS)
    return heap.class_of(heap.slot(special_selectors, 0))


def global_binding(heap: Heap, symbol: int) -> int:
    """The Association under `symbol` in the Smalltalk dictionary (what methods reference)."""
    smalltalk = heap.special(_SMALLTALK)
    associations = heap.slot(smalltalk, 1)
    nil = heap.special(_NIL)
    for index in range(heap.slot_count(associations)):
        association = heap.slot(associations, index)
        if association != nil and heap.slot(association, 0) == symbol:
            return association
    raise ImageError(f"no global {heap.bytes_of(symbol).decode()} in Smalltalk")


def find_method(heap: Heap, class_oop: int, selector: int) -> int:
    """The CompiledMethod of `class_oop` itself (not inherited) for `selector`."""
    method_dict = heap.slot(class_oop, _CLASS_METHOD_DICT)
    methods = heap.slot(method_dict, _MD_ARRAY)
    for index in range(_MD_FIRST_KEY, heap.slot_count(method_dict)):
        if heap.slot(method_dict, index) == selector:
            return heap.slot(methods, index - _MD_FIRST_KEY)
    raise ImageError(f"the class has no method {heap.bytes_of(selector).decode()}")


def plan_patch(image: bytes) -> MethodPatch:
    """Where `SystemDictionary>>readDocumentFile` is and what it becomes."""
    heap = Heap(image)
    symbols = find_symbols(heap, ("readDocumentFile", *_GLOBALS, *_SELECTORS))
    system_dictionary = heap.class_of(heap.special(_SMALLTALK))
    method = find_method(heap, system_dictionary, symbols["readDocumentFile"])
    if heap.format(method) < _FORMAT_METHOD:
        raise ImageError(f"readDocumentFile ({method:#x}) is not a CompiledMethod")
    literals = [global_binding(heap, symbols[name]) for name in _GLOBALS]
    literals += [symbols[name] for name in _SELECTORS]
    body = struct.pack(f"<{1 + len(literals)}I", method_header(len(literals)), *literals)
    body += _BYTECODES
    offset = heap.offset(method) + 4
    length = heap.byte_size(method) - 4 - (heap.format(method) & 3) - _TRAILER
    if len(body) > length:
        raise ImageError(f"readDocumentFile has {length} bytes; the new body needs {len(body)}")
    # Unreachable padding after the return: more returns, so a decompiler reads sense.
    return MethodPatch(offset, length, body.ljust(length, bytes([_RETURN_SELF])))


def patch_read_document_file(image: bytes) -> bytes:
    """`image` with `SystemDictionary>>readDocumentFile` evaluating the file named by the
    first argument after the image name. Same length; only the method's body changes."""
    patch = plan_patch(image)
    return image[: patch.offset] + patch.body + image[patch.offset + patch.length :]


# --- running the VM ----------------------------------------------------------------------

STARTUP_FILE = SMALLTALK_DIR / "vmstats.st"  # it compiles vmstats-methods.st beside it


class SqueakStartupError(RuntimeError):
    """squeakvm exited or its image never answered HTTP."""


class SqueakRequestError(OSError):
    """The image did not answer a request (an OSError, as the failure it wraps)."""


@dataclass(frozen=True, slots=True)
class SqueakVM:
    """A running Squeak VM serving its figures at `url` (see tests/smalltalk/vmstats.st)."""

    url: str
    log: Path  # the image's own log (start-up steps, failed requests)
    started_in: float  # seconds from spawning the VM to its first HTTP answer

    def get(self, path: str, timeout: float = 10.0) -> tuple[str, str]:
        """(Content-Type, body) of a GET of `path`; a failure quotes the image's log."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.headers.get("Content-Type", ""), response.read().decode("utf-8")
        except OSError as error:
            raise SqueakRequestError(f"GET {path}: {error}\n{self.log_text()}") from error

    def log_text(self) -> str:
        """The tail of the image's log, for failure messages."""
        return f"image log:\n{log_tail(self.log)}" if self.log.is_file() else "no image log"

    def raw(self, timeout: float = 10.0) -> tuple[int, list[int | None]]:
        """(millisecond clock, getVMParameters) now, as the image prints them itself."""
        return parse_raw(self.get("/vm/raw", timeout)[1])

    def answered(self) -> list[Answered]:
        """What the image's last 50 answers (but /vm/answered's) were computed from, oldest
        first; /vm/raw's among them mark when the tests read the VM."""
        return [parse_answered(line) for line in self.get("/vm/answered")[1].splitlines()]


@dataclass(frozen=True, slots=True)
class Answered:
    """The path of an answer, and the clock and parameters the image computed it from."""

    path: str
    clock: int
    parameters: list[int | None]


def parse_answered(line: str) -> Answered:
    """Read a line of `/vm/answered`: the path, a space, then as `/vm/raw`."""
    path, _, raw = line.partition(" ")
    return Answered(path, *parse_raw(raw))


def parse_raw(text: str) -> tuple[int, list[int | None]]:
    """Read `/vm/raw`: the clock, a space, and the array's printString ``(1 2 nil ...)``."""
    clock, _, array = text.strip().partition(" ")
    if not (array.startswith("(") and array.endswith(")")):
        raise ValueError(f"not an Array printString: {array[:60]!r}")
    values = [None if item == "nil" else int(item) for item in array[1:-1].split()]
    return int(clock), values


def find_vm() -> Path | None:
    """Debian's squeakvm binary (its directory carries the VM's version), if installed."""
    found = sorted(glob.glob(VM_GLOB))
    return Path(found[-1]) if found else None


@functools.cache
def _patched_bytes(source: Path) -> bytes:
    return patch_read_document_file(source.read_bytes())


def patched_image(directory: Path, source: Path = IMAGE) -> Path:
    """A patched copy of `source` in `directory`; the patch is computed once per session."""
    image = directory / "telemon.image"
    image.write_bytes(_patched_bytes(source))
    return image


@contextmanager
def run_squeak(
    vm: Path, directory: Path, source: Path = IMAGE, attempts: int = 3
) -> Iterator[SqueakVM]:
    """Start `vm` headless on a patched copy of `source` in `directory`; yield it; stop it.

    The image writes into `directory` only (the copy, its log). A start that fails (the
    image quits when it cannot serve; a port taken meanwhile leaves a listener that never
    answers) is retried on another port.
    """
    image = patched_image(directory, source)
    for attempt in range(1, attempts + 1):
        log, output = directory / f"vmstats{attempt}.log", directory / f"squeakvm{attempt}.out"
        pending = SqueakVM(f"http://127.0.0.1:{free_port()}", log, 0.0)
        port = pending.url.rsplit(":", 1)[1]
        command = [str(vm), "-vm-display-null", "-vm-sound-null", str(image)]
        command += [str(STARTUP_FILE), port, str(log)]
        with output.open("wb") as out:
            started = time.monotonic()
            process = subprocess.Popen(
                command, cwd=directory, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
            try:
                try:
                    wait_for_service(
                        process,
                        functools.partial(_answers, pending),
                        "squeakvm",
                        output,
                        SqueakStartupError,
                    )
                except SqueakStartupError as error:
                    if attempt == attempts:
                        raise SqueakStartupError(f"{error}\n{pending.log_text()}") from None
                    continue
                yield SqueakVM(pending.url, log, time.monotonic() - started)
                return
            finally:
                stop_process(process)


def _answers(vm: SqueakVM) -> bool:
    try:
        vm.raw(timeout=1.0)  # short: a listener that is not the image never answers
    except OSError:  # not listening yet
        return False
    return True
