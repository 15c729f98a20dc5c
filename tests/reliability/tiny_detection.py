"""The CPU demo Mask R-CNN config shrunk for process-level tests, and how to run the tools."""
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / 'configs/demo/maskrcnn_mutual_r18_shapes.py'
IMAGE_SIZE = 64
# 2 epochs of 2 iterations (4 images, batches of 2), warm-up then cosine learning rate.
ITERATIONS = 4
SCHEDULE = f'''
max_epochs = {ITERATIONS // 2}
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=2e-5),
]
'''

_CONFIG = '''
_base_ = {base!r}
data_root = {data_root!r}
image_size = {size}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob={flip}),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size={batch_size},
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(data_root=data_root))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
{validation}
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0, deterministic=True)
'''


# The demo's validation (its grid, on the validation images) or none.
_VALIDATION = {True: ("val_dataloader = dict(dataset=dict(data_root=data_root))\n"
                      "val_evaluator = dict(ann_file=data_root + "
                      "'annotations/instances_val.json')"),
               False: 'val_cfg = None\nval_dataloader = None\nval_evaluator = None'}


def write_config(path: Path, data_root: Path, extra: str = '', flip: float = 0.5,
                 batch_size: int = 2, validation: bool = False) -> Path:
    """Write a config inheriting the demo config: 64 px images, tiny batches, no val.

    ``extra`` goes into ``path``, which inherits the shrunk demo config written next to
    it (so that its dicts merge into the demo's instead of replacing them).
    ``validation``: keep the demo's per-configuration validation (``extra`` can shrink
    its ``val_cfg``).
    """
    base = path.with_name(f'{path.stem}_base.py')
    base.write_text(_CONFIG.format(base=str(DEMO_CONFIG), data_root=f'{data_root}/',
                                   size=IMAGE_SIZE, flip=flip, batch_size=batch_size,
                                   validation=_VALIDATION[validation]))
    path.write_text(f'_base_ = {base.name!r}\ndata_root = {f"{data_root}/"!r}\n{extra}')
    return path


#: Ports below Linux's ephemeral range (32768-60999): the ephemeral ports that gloo and
#: other sockets get from the kernel cannot take one between our check and torchrun's bind.
RENDEZVOUS_PORTS = range(20000, 32768)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a rendezvous, outside the ephemeral range."""
    for port in random.SystemRandom().sample(RENDEZVOUS_PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError(f'no free port in {RENDEZVOUS_PORTS}')


def tool_env(**extra: str) -> dict:
    """Environment for the tools: one thread, this repo importable, this Python first."""
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO),
                PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                      os.environ.get('PATH', '')]), **extra)


def run_tool(args: List, timeout: float = 240,
             port: Optional[int] = None) -> subprocess.CompletedProcess:
    """Run ``tools/<args>`` (a .py with this Python, a .sh with bash); raise with its log.

    ``port``: the rendezvous port of ``dist_*.sh`` (on 127.0.0.1).
    """
    script = REPO / 'tools' / args[0]
    command = (['bash'] if script.suffix == '.sh' else [sys.executable]) + [str(script)]
    env = tool_env() if port is None else tool_env(PORT=str(port), MASTER_ADDR='127.0.0.1')
    result = subprocess.run(command + [str(a) for a in args[1:]], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f'{args[0]} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result
