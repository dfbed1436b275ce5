"""Analysis: where every byte of an image comes from, answered from the file index alone.

Every layer is indexed as it enters the store (``store.file_index``); nothing here reads
a layer's bytes. The computations are pure functions over index rows, which the store
hands over column by column (``store.LayerColumns``; a list of ``IndexEntry`` works too):

    layers = image_layers(store, record, created_by)      # LayerInput per layer
    report = analyze_image("app:1", layers, base_layers=2)  # ImageReport
    report.totals.wasted_bytes, report.hidden, report.lines, report.duplicates
    compare_images("app:2", layers2, "app:1", layers)      # Comparison (by diff_id)
    store_sharing(images, store.file_index.shared_files())  # StoreReport
    check_budgets(report, Budgets(max_wasted_bytes=...), live_paths)  # RuleResult list
    image_json(report, layers)                             # the --json document

Waste, exactly (see ``_waste.py``): a version of a path in layer i is hidden when a
later layer writes the path again, deletes it, deletes a directory above it, or makes a
directory above it opaque; wasted bytes are the hidden versions' regular-file bytes,
hardlinks counted once. Kinds: ``metadata-only`` (same content, new mode/owner),
``overwritten`` (other content), ``deleted``; each comes with a fix (``FIXES``).
"""

from typing import TYPE_CHECKING

from lamina._lazy import lazy_names
from lamina.analysis._model import (
    FIXES,
    Duplicate,
    Hidden,
    ImageReport,
    LayerInput,
    LayerReport,
    LineWaste,
    Totals,
)
from lamina.analysis._source import base_layer_count, image_layers
from lamina.analysis._waste import analyze_image, live_paths, live_tree

if TYPE_CHECKING:
    from lamina.analysis._budget import (
        Budgets,
        RuleResult,
        check_budgets,
        glob_regex,
        parse_bytes,
        parse_dive_ci,
    )
    from lamina.analysis._compare import ChangeGroup, Comparison, FileChange, compare_images
    from lamina.analysis._json import (
        budgets_json,
        comparison_json,
        dumps,
        image_json,
        store_json,
    )
    from lamina.analysis._sharing import (
        SharedFile,
        SharedLayer,
        StoreImage,
        StoreReport,
        store_sharing,
    )

# Loaded on first use: the terminal view of one image needs none of these, and start-up
# is a good part of what `lamina analyze` costs.
_WHERE = {
    "Budgets": "_budget",
    "RuleResult": "_budget",
    "check_budgets": "_budget",
    "glob_regex": "_budget",
    "parse_bytes": "_budget",
    "parse_dive_ci": "_budget",
    "ChangeGroup": "_compare",
    "Comparison": "_compare",
    "FileChange": "_compare",
    "compare_images": "_compare",
    "budgets_json": "_json",
    "comparison_json": "_json",
    "dumps": "_json",
    "image_json": "_json",
    "store_json": "_json",
    "SharedFile": "_sharing",
    "SharedLayer": "_sharing",
    "StoreImage": "_sharing",
    "StoreReport": "_sharing",
    "store_sharing": "_sharing",
}


__all__ = [
    "FIXES",
    "Budgets",
    "ChangeGroup",
    "Comparison",
    "Duplicate",
    "FileChange",
    "Hidden",
    "ImageReport",
    "LayerInput",
    "LayerReport",
    "LineWaste",
    "RuleResult",
    "SharedFile",
    "SharedLayer",
    "StoreImage",
    "StoreReport",
    "Totals",
    "analyze_image",
    "base_layer_count",
    "budgets_json",
    "check_budgets",
    "compare_images",
    "comparison_json",
    "dumps",
    "glob_regex",
    "image_json",
    "image_layers",
    "live_paths",
    "live_tree",
    "parse_bytes",
    "parse_dive_ci",
    "store_json",
    "store_sharing",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {name: f"{__name__}.{module}" for name, module in _WHERE.items()},
    __all__,
    globals(),
)
