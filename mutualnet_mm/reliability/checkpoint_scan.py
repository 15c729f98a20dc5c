"""Bound a checkpoint file before anything unpickles it.

``torch.load(weights_only=True)`` refuses code, but not every way a small file can ask
for a lot: ``bytearray(3_000_000_000)`` is an allowed call, a compressed zip member
inflates a thousandfold, ``x = [x, x]`` nested 40 deep is 2 KB of memo references with
2**40 paths through it, and a tuple nested 300,000 deep crashes the interpreter when it is
hashed as a dict key. :func:`scan_checkpoint` reads the file once before ``torch.load``
does and refuses all of these. It interprets the pickle opcode stream abstractly, in
time linear in the file:

- only the globals a weights-only checkpoint of this stack needs (:data:`SCAN_GLOBALS`),
  each called only with arguments of the shape it is pickled with;
- every node knows its nesting depth and its number of paths (the size of the tree it
  unfolds to); both are bounded, so memo references cost nothing extra but cannot
  multiply work for a later walk or hash;
- a container is filled only before it is placed in another one (what ``pickle``
  writes), so depths and path counts are final when they are checked and there are no
  cycles;
- dict keys and set members are strings, bools, ``None``, integers below the hash
  modulus or tuples of those, and their hashing work is counted;
- every allocation the payload asks for (storages, decoded bytes, bytearrays, numpy
  array copies) is charged to a budget of twice the file's size;
- tensors are views that fit inside their storage, no larger than it;
- zip members are stored, not compressed, each exactly the size the pickle claims.

The checking stand-ins of :mod:`mutualnet_mm.reliability.checkpoint` stay as a second line.
"""
import math
import mmap
import os
import pickle
import struct
import tarfile
import zipfile
from struct import calcsize, unpack_from
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

#: Deepest nesting of containers accepted in a checkpoint.
MAX_NESTING = 200
#: Extra bytes of allocations allowed on top of twice the file's size.
BUDGET_SLACK = 1 << 16
#: Unfolded tree size allowed per byte of file (memo references may repeat a subtree).
PATHS_PER_BYTE = 4
#: Integers that hash to themselves (CPython's modulus for numeric hashes is 2**61 - 1).
MAX_HASHED_INT = (1 << 61) - 2

_ELEMENT_SIZES = {name: dtype.itemsize
                  for dtype, name in torch.storage._dtype_to_storage_type_map().items()}
_TENSOR_FUNCTIONS = ('_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_parameter',
                     '_rebuild_parameter_with_state')
_NUMPY_CORES = ('numpy.core.multiarray', 'numpy._core.multiarray')
#: Globals a checkpoint may name, and what calling each builds.
SCAN_GLOBALS: Dict[str, str] = {
    'collections.OrderedDict': 'ordered_dict',
    'collections.Counter': 'counter',  # MultiStepLR's milestones
    **{f'torch._utils.{name}': 'tensor' for name in _TENSOR_FUNCTIONS},
    **{f'torch.{name}': 'storage_type' for name in _ELEMENT_SIZES},
    'torch.device': 'device',
    'torch.Size': 'size',
    'mmengine.logging.history_buffer.HistoryBuffer': 'history_buffer',
    'builtins.getattr': 'getattr',
    'numpy.ndarray': 'ndarray_type',
    'numpy.dtype': 'dtype',
    **{f'{core}._reconstruct': 'ndarray' for core in _NUMPY_CORES},
    **{f'{core}.scalar': 'scalar' for core in _NUMPY_CORES},
    '_codecs.encode': 'bytes',
    'builtins.bytes': 'bytes',
    'builtins.bytearray': 'bytes',
    'builtins.set': 'set',
    'builtins.complex': 'complex',
}
_LATIN1 = ('latin1', 'latin-1')
# The opcodes torch's weights-only unpickler executes, as the integers ``data[pos]``
# reads; any other is refused.
(APPEND, APPENDS, BINFLOAT, BINGET, BININT, BININT1, BININT2, BINPERSID, BINPUT,
 BINUNICODE, BUILD, EMPTY_DICT, EMPTY_LIST, EMPTY_SET, EMPTY_TUPLE, GLOBAL, LONG1,
 LONG_BINGET, LONG_BINPUT, MARK, NEWFALSE, NEWOBJ, NEWTRUE, NONE, PROTO, REDUCE,
 SETITEM, SETITEMS, SHORT_BINSTRING, STOP, TUPLE, TUPLE1, TUPLE2, TUPLE3) = (
    getattr(pickle, name)[0] for name in '''
APPEND APPENDS BINFLOAT BINGET BININT BININT1 BININT2 BINPERSID BINPUT BINUNICODE BUILD
EMPTY_DICT EMPTY_LIST EMPTY_SET EMPTY_TUPLE GLOBAL LONG1 LONG_BINGET LONG_BINPUT MARK
NEWFALSE NEWOBJ NEWTRUE NONE PROTO REDUCE SETITEM SETITEMS SHORT_BINSTRING STOP TUPLE
TUPLE1 TUPLE2 TUPLE3
'''.split())
_LEAVES = {NONE: None, NEWTRUE: True, NEWFALSE: False}
_EMPTY = {EMPTY_TUPLE: 'tuple', EMPTY_LIST: 'list', EMPTY_DICT: 'dict', EMPTY_SET: 'set'}
#: Fixed-size number opcodes: their layout and its size in bytes.
_NUMBERS = {code: (layout, calcsize(layout))
            for code, layout in ((BININT, '<i'), (BININT2, '<H'), (BINFLOAT, '>d'))}
_MEMO = frozenset({BINPUT, LONG_BINPUT, BINGET, LONG_BINGET})
Buffer = Union[bytes, mmap.mmap]


class CheckpointRefusedError(ValueError):
    """The file is not a checkpoint this project loads; the message says what was refused."""


def _refuse(what: str) -> None:
    raise CheckpointRefusedError(what)


def _malformed(what: str) -> None:
    raise ValueError(what)


class _Node:
    """What the scan knows of one object the pickle builds (literals stay plain values)."""

    __slots__ = ('kind', 'name', 'depth', 'paths', 'sealed', 'items', 'nbytes', 'hashable')

    def __init__(self, kind: str, name: str = '', items: Optional[list] = None,
                 nbytes: int = 0) -> None:
        self.kind = kind
        self.name = name  # a global's dotted name; a storage's type
        self.depth = 1
        self.paths = 1
        self.sealed = False  # placed in another object: never modified again
        self.items = items  # a tuple's or a list's items
        self.nbytes = nbytes  # a storage's or a bytes object's size
        self.hashable = False


def _paths(value: Any) -> int:
    return value.paths if isinstance(value, _Node) else 1


def _describe(value: Any) -> str:
    if isinstance(value, _Node):
        return value.name or value.kind
    return type(value).__name__


def _is_hashable(value: Any) -> bool:
    """Whether ``value`` may be a dict key or set member (hashing cost known, no flooding)."""
    if isinstance(value, _Node):
        return value.hashable
    if type(value) is int:
        return abs(value) <= MAX_HASHED_INT
    return value is None or type(value) in (str, bool, bytes)


class PickleScan:
    """An abstract run of one pickle stream.

    Args:
        budget: Bytes the payload may allocate, shared by every stream of one file.
        max_paths: Largest unfolded tree size (and hashing work) allowed.
    """

    def __init__(self, budget: List[int], max_paths: int) -> None:
        self.budget = budget
        self.max_paths = max_paths
        self.hash_work = 0
        #: Storage key -> bytes, for the storages the pickle refers to.
        self.storages: Dict[str, int] = {}

    # -- bookkeeping ------------------------------------------------------------------
    def charge(self, num_bytes: int, what: str) -> None:
        """Charge an allocation of ``num_bytes`` to the file's budget."""
        self.budget[0] -= num_bytes
        if self.budget[0] < 0:
            _refuse(f'{what} of {num_bytes} bytes: the objects of this file would take more '
                    'than twice its size')

    def adopt(self, parent: _Node, children: List[Any]) -> bool:
        """Record that ``children`` are placed in ``parent``; whether all are hashable."""
        depth, paths, hashable = parent.depth, parent.paths, True
        for child in children:
            if type(child) is _Node:
                if child is parent:
                    _refuse('a container that contains itself')
                child.sealed = True
                if child.depth >= depth:
                    depth = child.depth + 1
                paths += child.paths
                hashable = hashable and child.hashable
            else:
                if depth < 2:
                    depth = 2
                paths += 1
                hashable = hashable and _is_hashable(child)
        parent.depth, parent.paths = depth, paths
        if depth > MAX_NESTING:
            _refuse(f'containers nested deeper than {MAX_NESTING}')
        if paths > self.max_paths:
            _refuse(f'shared references that unfold to more than {self.max_paths} objects')
        return hashable

    def hashed(self, value: Any, where: str) -> None:
        """Check a dict key or set member and count its hashing work."""
        if not _is_hashable(value):
            _refuse(f'{where} of type {_describe(value)} (allowed: str, bytes, bool, None, '
                    f'integers up to {MAX_HASHED_INT} in magnitude, tuples of those)')
        self.hash_work += _paths(value)
        if self.hash_work > self.max_paths:
            _refuse(f'dict keys and set members that take more than {self.max_paths} steps '
                    'to hash')

    def container(self, kind: str, items: List[Any], name: str = '') -> _Node:
        node = _Node(kind, name, items if kind in ('tuple', 'list') else None)
        node.hashable = self.adopt(node, items) and kind == 'tuple'
        return node

    @staticmethod
    def mutable(target: Any, kinds: Tuple[str, ...], opcode: str) -> _Node:
        if not isinstance(target, _Node) or target.kind not in kinds:
            _refuse(f'{opcode} on {_describe(target)} (allowed on: {", ".join(kinds)})')
        if target.sealed:
            _refuse(f'{opcode} on a {target.kind} already placed in another object '
                    '(pickle fills a container before it uses it)')
        return target

    # -- calls ------------------------------------------------------------------------
    def call(self, function: Any, args: Any) -> _Node:
        """The result of ``REDUCE``: ``function(*args)``, checked by what it builds."""
        if not (isinstance(function, _Node) and function.kind == 'global'):
            _refuse(f'a call of {_describe(function)}')
        if not (isinstance(args, _Node) and args.kind == 'tuple'):
            _refuse(f'arguments of {function.name} that are not a tuple')
        builds, values = SCAN_GLOBALS[function.name], args.items
        if builds == 'tensor':
            return self.tensor(function.name, values, args)
        if builds == 'bytes':
            return self.byte_string(function.name, values)
        if builds == 'set':
            if values and not (len(values) == 1 and isinstance(values[0], _Node)
                               and values[0].kind == 'list'):
                _refuse('set(...) of anything but one list')
            for member in (values[0].items if values else ()):
                self.hashed(member, 'a set member')
        elif builds == 'ordered_dict' and values:
            _refuse('OrderedDict(...) with arguments (pickle fills it with SETITEMS)')
        elif builds == 'counter' and not (len(values) <= 1 and all(
                isinstance(value, _Node) and value.kind == 'dict' for value in values)):
            _refuse('Counter(...) of anything but one dict')
        elif builds in ('storage_type', 'ndarray_type', 'history_buffer'):
            _refuse(f'a call of {function.name}')
        node = self.container('dict' if builds == 'ordered_dict' else builds, [args],
                              function.name)
        node.hashable = False
        return node

    def byte_string(self, name: str, values: list) -> _Node:
        if name == 'builtins.bytes':
            if values:
                _refuse(f'bytes{tuple(map(_describe, values))} (only bytes() is allowed)')
            size = 0
        else:
            text = values[0] if values else ''
            encoding = values[1] if len(values) > 1 else 'latin1'
            if not (type(text) is str and encoding in _LATIN1 and len(values) <= 2):
                _refuse(f'{name}{tuple(map(_describe, values))} (only (str, "latin1") '
                        'is allowed)')
            size = len(text)
        self.charge(size, name)
        return _Node('bytes', name, nbytes=size)

    def tensor(self, name: str, values: list, args: _Node) -> _Node:
        function = name.rsplit('.', 1)[1]
        if function.startswith('_rebuild_parameter'):
            data = values[0] if values else None
            if not (isinstance(data, _Node) and data.kind == 'tensor'):
                _refuse(f'{function} of {_describe(data)} (a tensor expected)')
        else:
            self.check_view(values)
        return self.container('tensor', [args], name)

    def check_view(self, values: list) -> None:
        """A tensor over a storage: sizes and strides that stay inside it."""
        if len(values) < 4:
            _refuse('a tensor without storage, offset, size and stride')
        storage, offset, size, stride = values[:4]
        if not (isinstance(storage, _Node) and storage.kind == 'storage'):
            _refuse(f'a tensor over {_describe(storage)} (a stored storage expected)')
        dims = []
        for shape in (size, stride):
            if not (isinstance(shape, _Node) and shape.kind == 'tuple' and len(shape.items) <= 64
                    and all(type(n) is int and n >= 0 for n in shape.items)):
                _refuse(f'a tensor shape or stride {_describe(shape)} (non-negative integers '
                        'expected)')
            dims.append(shape.items)
        if type(offset) is not int or offset < 0 or len(dims[0]) != len(dims[1]):
            _refuse('a tensor with a bad storage offset or stride')
        itemsize = _ELEMENT_SIZES[storage.name]
        numel = math.prod(dims[0])
        tensor = f'a tensor of shape {tuple(dims[0])} and strides {tuple(dims[1])}'
        if numel and (offset + sum((n - 1) * s for n, s in zip(*dims)) + 1) * itemsize \
                > storage.nbytes:
            _refuse(f'{tensor} reaching past its storage ({storage.nbytes} bytes)')
        if numel * itemsize > storage.nbytes:
            _refuse(f'{tensor} larger than its storage ({storage.nbytes} bytes)')

    def storage(self, pid: Any) -> _Node:
        """``BINPERSID``: a storage, ``('storage', type, key, location, numel[, view])``."""
        items = pid.items if isinstance(pid, _Node) and pid.kind == 'tuple' else None
        if not (items and len(items) in (5, 6) and items[0] in ('storage', b'storage')):
            _refuse('a persistent id that is not a storage')
        storage_type, key, location, numel = items[1:5]
        if not (isinstance(storage_type, _Node) and storage_type.kind == 'global'
                and SCAN_GLOBALS.get(storage_type.name) == 'storage_type'):
            _refuse(f'a storage of type {_describe(storage_type)}')
        if type(key) is not str or type(location) is not str or location.startswith('meta') \
                or type(numel) is not int or numel < 0:
            _refuse('a storage with a bad key, location or size')
        name = storage_type.name.split('.')[-1]
        nbytes = numel * _ELEMENT_SIZES[name]
        if key not in self.storages:
            self.charge(nbytes, f'storage {key!r}')
            self.storages[key] = nbytes
        elif self.storages[key] != nbytes:
            _refuse(f'storage {key!r} claimed with two sizes')
        view = items[5] if len(items) == 6 else None
        if view is not None:
            view_items = view.items if isinstance(view, _Node) and view.kind == 'tuple' else ()
            if not (len(view_items) == 3 and type(view_items[0]) is str
                    and all(type(n) is int and n >= 0 for n in view_items[1:])
                    and view_items[1] + view_items[2] <= numel):
                _refuse(f'a view of storage {key!r} outside it')
            nbytes = view_items[2] * _ELEMENT_SIZES[name]
        return _Node('storage', name, nbytes=nbytes)

    # -- the opcode stream ------------------------------------------------------------
    def run(self, data: Buffer, pos: int = 0) -> Tuple[Any, int]:
        """Scan the pickle at ``data[pos:]``; returns what it builds and where it ends."""
        try:
            return self._run(data, pos)
        except (IndexError, struct.error) as error:
            raise ValueError(f'the pickle is truncated ({error})') from error

    def _run(self, data: Buffer, pos: int) -> Tuple[Any, int]:
        stack: List[Any] = []
        metastack: List[List[Any]] = []
        memo: Dict[int, Any] = {}
        end = len(data)

        def pop_mark() -> List[Any]:
            nonlocal stack
            if not metastack:
                _malformed('a pickle whose MARKs do not match')
            items, stack = stack, metastack.pop()
            return items

        def pop() -> Any:
            if not stack:
                _malformed('a pickle that pops an empty stack')
            return stack.pop()

        while True:
            code = data[pos]
            pos += 1
            if code in _MEMO:
                if code in (BINPUT, BINGET):
                    index, pos = data[pos], pos + 1
                else:
                    index, pos = unpack_from('<I', data, pos)[0], pos + 4
                if code in (BINPUT, LONG_BINPUT):
                    if not stack:
                        _malformed('a pickle that memoizes an empty stack')
                    memo[index] = stack[-1]
                elif index in memo:
                    stack.append(memo[index])
                else:
                    _malformed(f'a pickle that reads memo entry {index} before writing it')
            elif code == BININT1:
                stack.append(data[pos])
                pos += 1
            elif code == MARK:
                metastack.append(stack)
                stack = []
            elif code == TUPLE:
                items = pop_mark()  # before ``stack`` is read: pop_mark rebinds it
                stack.append(self.container('tuple', items))
            elif code in (TUPLE1, TUPLE2, TUPLE3):
                count = code - TUPLE1 + 1
                if len(stack) < count:
                    _malformed('a pickle that pops an empty stack')
                items = stack[-count:]
                del stack[-count:]
                stack.append(self.container('tuple', items))
            elif code in _LEAVES:
                stack.append(_LEAVES[code])
            elif code in _EMPTY:
                node = _Node(_EMPTY[code], items=[] if code in (EMPTY_TUPLE, EMPTY_LIST) else None)
                node.hashable = code == EMPTY_TUPLE
                stack.append(node)
            elif code in (BINUNICODE, SHORT_BINSTRING, LONG1):
                if code == BINUNICODE:
                    size, pos = unpack_from('<I', data, pos)[0], pos + 4
                else:
                    size, pos = data[pos], pos + 1
                if pos + size > end:
                    raise IndexError(f'{size} bytes claimed at byte {pos} of {end}')
                raw, pos = data[pos:pos + size], pos + size
                stack.append(int.from_bytes(raw, 'little', signed=True) if code == LONG1
                             else str(raw, 'utf-8', 'surrogatepass'))
            elif code in _NUMBERS:
                layout, size = _NUMBERS[code]
                stack.append(unpack_from(layout, data, pos)[0])
                pos += size
            elif code in (APPEND, APPENDS):
                items = pop_mark() if code == APPENDS else [pop()]
                target = self.mutable(stack[-1] if stack else None, ('list',), 'APPEND')
                self.adopt(target, items)
                target.items.extend(items)
            elif code in (SETITEM, SETITEMS):
                items = pop_mark() if code == SETITEMS else [pop(), pop()][::-1]
                if len(items) % 2:
                    _malformed('SETITEMS with a key and no value')
                target = self.mutable(stack[-1] if stack else None, ('dict',), 'SETITEM')
                for key in items[::2]:
                    self.hashed(key, 'a dict key')
                self.adopt(target, items)
            elif code == GLOBAL:
                module, pos = self.line(data, pos)
                attribute, pos = self.line(data, pos)
                full = ('builtins' if module == '__builtin__' else module) + '.' + attribute
                if full not in SCAN_GLOBALS:
                    _refuse(f'global {full}')
                stack.append(_Node('global', full))
            elif code == REDUCE:
                args = pop()
                stack.append(self.call(pop(), args))
            elif code == NEWOBJ:
                args, cls = pop(), pop()
                if not (isinstance(cls, _Node) and cls.kind == 'global'
                        and SCAN_GLOBALS[cls.name] == 'history_buffer'
                        and isinstance(args, _Node) and args.kind == 'tuple' and not args.items):
                    _refuse(f'a new object of {_describe(cls)}')
                stack.append(_Node('history_buffer', cls.name))
            elif code == BUILD:
                state = pop()
                target = self.mutable(stack[-1] if stack else None,
                                      ('history_buffer', 'ndarray', 'dtype', 'dict'), 'BUILD')
                if target.kind == 'dict' and target.name != 'collections.OrderedDict':
                    _refuse('BUILD on a plain dict')
                if target.kind == 'ndarray':
                    raw = state.items[-1] if isinstance(state, _Node) and state.items else None
                    self.charge(raw.nbytes if isinstance(raw, _Node) else len(raw or b''),
                                'a numpy array')
                self.adopt(target, [state])
            elif code == BINPERSID:
                stack.append(self.storage(pop()))
            elif code == PROTO:
                pos += 1
            elif code == STOP:
                if len(stack) != 1 or metastack:
                    _malformed('a pickle that leaves objects behind')
                return stack[0], pos
            else:
                _malformed(f'pickle opcode {bytes([code])!r} at byte {pos - 1} (torch does not '
                           'load it)')

    @staticmethod
    def line(data: Buffer, pos: int) -> Tuple[str, int]:
        """A newline-terminated argument (of ``GLOBAL``) of at most 256 bytes, and its end."""
        stop = data.find(b'\n', pos, pos + 257)
        if stop < 0:
            _refuse('a global name longer than 256 bytes')
        return str(data[pos:stop], 'utf-8'), stop + 1


def _scan_zip(path: str, scan: PickleScan) -> None:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        names = [member.filename for member in members]
        if len(set(names)) != len(names):
            _refuse('an archive with two members of one name')
        for member in members:
            if member.compress_type != zipfile.ZIP_STORED \
                    or member.compress_size != member.file_size:
                _refuse(f'compressed archive member {member.filename!r} (torch.save stores '
                        'members uncompressed)')
        pickles = [name for name in names if name.endswith('/data.pkl') and name.count('/') == 1]
        if len(pickles) != 1:
            _malformed(f'an archive with {len(pickles)} data.pkl records (one expected)')
        prefix = pickles[0][:-len('data.pkl')]
        scan.run(archive.read(pickles[0]))  # stored: no larger than the file
        sizes = {member.filename: member.file_size for member in members}
        for key, nbytes in scan.storages.items():
            stored = sizes.get(f'{prefix}data/{key}')
            if stored is None:
                _malformed(f'an archive without the record of storage {key!r}')
            if stored != nbytes:
                _refuse(f'storage {key!r} of {nbytes} bytes stored as {stored} bytes')


def _scan_legacy(path: str, size: int, scan: PickleScan) -> None:
    """The format before torch 1.6: five pickles, then the storages' bytes."""
    with open(path, 'rb') as file:
        try:
            tarfile.open(fileobj=file, mode='r:')
        except tarfile.TarError:
            pass
        else:
            _refuse('a tar checkpoint (the format of torch 0.3 and older)')
        # A memory map reads no further than the file, whatever length a pickle claims.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as stream:
            end = 0
            for _ in range(5):  # magic number, protocol, system info, the object, storage keys
                end = scan.run(stream, end)[1]
            stored = size - end
    claimed = sum(scan.storages.values()) + 8 * len(scan.storages)
    if claimed > stored:
        _refuse(f'storages of {claimed} bytes in {stored} bytes of data')


def scan_checkpoint(path: str) -> None:
    """Refuse a checkpoint file that could take more than its size, or crash a loader.

    Raises:
        CheckpointRefusedError: What was refused (see the module docstring).
        ValueError: The file is not a zip or pickle checkpoint (its message says why).
    """
    size = os.path.getsize(path)
    scan = PickleScan(budget=[2 * size + BUDGET_SLACK],
                      max_paths=PATHS_PER_BYTE * size + BUDGET_SLACK)
    with open(path, 'rb') as file:
        is_zip = file.read(4) == b'PK\x03\x04'
    try:
        if is_zip:
            _scan_zip(path, scan)
        else:
            _scan_legacy(path, size, scan)
    except CheckpointRefusedError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f'{type(error).__name__}: {error}') from error


__all__ = ['CheckpointRefusedError', 'MAX_NESTING', 'SCAN_GLOBALS', 'scan_checkpoint']
