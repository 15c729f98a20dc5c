"""Small helpers shared by the command-line tools."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def check_config_file(path: str) -> None:
    """Raise a clear error for a config path that does not exist or is not Python."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    if not path.endswith('.py'):
        raise ValueError(f'config file {path!r} must be a .py file')


def set_default_work_dir(cfg: Config, config_path: str, work_dir: Optional[str]) -> None:
    """``--work-dir`` first, then the config's, else ``work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
