"""Check that the environment holds the pinned OpenMMLab stack; exit 1 if not."""
import argparse
import importlib.metadata as metadata
import sys

PINS = {
    'torch': '2.13.0',
    'torchvision': '0.28.0',
    'mmcv': '2.1.0',
    'mmengine': '0.10.7',
    'mmdet': '3.3.0',
    'mmaction2': '1.2.0',
    'mmpretrain': '1.2.0',
    'scikit-learn': '1.9.1',
    'deepforest': '2.1.0',  # data files only: never imported
}
IMPORTS = ('mmcv.ops', 'mmdet.models', 'mmaction.models', 'mmpretrain.models',
           'pycocotools.coco', 'cv2', 'decord', 'av', 'sklearn.datasets', 'mutualnet_mm')


def problems() -> list:
    found = []
    for name, version in PINS.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            found.append(f'{name} is not installed (need {version})')
            continue
        if installed != version:
            found.append(f'{name} {installed} is installed, need {version}')
    if found:
        return found
    for module in IMPORTS:
        try:
            __import__(module)
        except Exception as error:  # any import failure means the set-up is incomplete
            found.append(f'import {module} failed: {type(error).__name__}: {error}')
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--quiet', action='store_true', help='print nothing when complete')
    args = parser.parse_args()
    found = problems()
    for line in found:
        print(f'[check_env] {line}', file=sys.stderr)
    if not found and not args.quiet:
        print('[check_env] ' + ', '.join(f'{k} {v}' for k, v in PINS.items()))
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
