"""Arguments shared by ``tools/train.py`` and ``tools/test.py``.

Importable without the OpenMMLab stack (only mmengine's config module, without torch),
so that the tools parse their arguments, ``--help`` included, before the heavy imports.
"""
import argparse

from mmengine.config import DictAction

#: ``--check-data`` modes: ``mutualnet_mm.reliability.data_checks.CHECK_MODES`` (a test keeps them
#: equal), written out here since importing it imports the stack.
CHECK_MODES = ('fast', 'all', 'none')


def add_runner_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """The arguments every runner tool takes: mmdet's ``--work-dir``, ``--cfg-options``,
    ``--launcher`` and ``--local_rank``, and ``--check-data`` (see ``check_data_config``)."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_epochs=1 (the '
                             'learning-rate schedule follows a new schedule length)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--check-data', choices=CHECK_MODES, default='fast',
                        help='data check before the run: fast (annotation files; the first '
                             '100 samples of each dataset\'s data list are read, images '
                             'decoded within MAX_IMAGE_PIXELS), all (every sample, with a '
                             'progress bar), none')
