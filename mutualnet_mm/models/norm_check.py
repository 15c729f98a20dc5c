"""Which norm layers may sit after a slimmed layer (those with slimmable twins)."""
from typing import Optional

#: mmcv norm types whose layers ``mutualnet_mm.ops.convert_to_slimmable`` can slim.
SLIMMABLE_NORMS = ('BN', 'BN2d', 'SyncBN')


def check_slimmable_norm(norm_cfg: Optional[dict], owner: str) -> None:
    """Raise ``ValueError`` unless ``norm_cfg`` is None or a slimmable norm type."""
    if norm_cfg is not None and norm_cfg.get('type') not in SLIMMABLE_NORMS:
        raise ValueError(f'{owner} cannot slim norm layers of type {norm_cfg.get("type")!r}; '
                         f'allowed: None or one of {SLIMMABLE_NORMS}')
