"""Results as pandas tables for the book: ours (mean ± std over seeds) beside the papers.

Every number here is read from a results store (:class:`capslib.run.store.results.ResultsStore`);
the papers' numbers come from :mod:`capslib.study.paper_numbers`. No plotting.

Conventions: accuracies are shown in % like paper A; AUROC/AUPRC as fractions; the std is
the sample std over seeds (ddof = 1), left out when there is one seed; "Δ" is ours − paper.
The headline accuracy of paper A's rows is score ``length_difference`` at threshold 0 for
variant *standard* (anomaly iff ‖z_a‖ > ‖z_n‖) and ``anomaly_score`` at the logistic
threshold for variant *proposed*.

:mod:`.load` reads the store (and trains what is missing), :mod:`.fmt` aggregates and formats,
:mod:`.paper_a` and :mod:`.paper_b` build each paper's tables, :mod:`.cost` the cost and
provenance tables. The notebooks use the names below.
"""
from capslib.views.report.load import (ATTEMPTS, HEADLINE, ROW_LABEL, SHOWN_IDS, empty_note, load_attempts,
    load_or_run, load_rows,
    open_store, run_summary, say_if_empty, show, to_frame)
from capslib.views.report.fmt import class_span, datasets, fmt, held_out_order, like_mean
from capslib.views.report.paper_a import (MARGIN_PP, accuracy_caption, accuracy_long, accuracy_table,
    headline, metric_table)
from capslib.views.report.paper_b import case_studies, case_study_table, dataset_note, novelty_long, novelty_table
from capslib.views.report.cost import (CELL_COLUMNS, COST_COLUMNS, SLOWEST, cells, cost_table,
    cost_totals, plateau_table, provenance, slowest_cells)

__all__ = [
    'ATTEMPTS', 'HEADLINE', 'ROW_LABEL', 'SHOWN_IDS', 'empty_note', 'load_attempts', 'load_or_run', 'load_rows', 'open_store',
    'run_summary', 'say_if_empty', 'show', 'to_frame', 'class_span', 'datasets', 'fmt',
    'held_out_order', 'like_mean', 'MARGIN_PP', 'accuracy_caption', 'accuracy_long',
    'accuracy_table', 'headline', 'metric_table', 'case_studies', 'case_study_table', 'dataset_note', 'novelty_long',
    'novelty_table', 'CELL_COLUMNS', 'COST_COLUMNS', 'cells', 'cost_table',
    'cost_totals', 'plateau_table', 'provenance', 'SLOWEST', 'slowest_cells',
]
