from setuptools import find_packages, setup

setup(
    name='mutualnet_mm',
    version='0.1.0',
    description='MutualNet width-resolution mutual learning for OpenMMLab',
    license='Apache-2.0',
    packages=find_packages(include=('mutualnet_mm', 'mutualnet_mm.*')),
    python_requires='>=3.10',
    install_requires=[
        'torch===2.13.0', 'torchvision===0.28.0', 'mmcv==2.1.0', 'mmengine==0.10.7',
        'mmdet==3.3.0', 'mmaction2==1.2.0', 'mmpretrain==1.2.0', 'pycocotools',
    ],
)
