"""Reports of trained networks: case galleries, run records, and the committed records the book reads.

    cases      pick_cases, case_figure, write_cases, case_rows          best, median and worst cases
    record     curves_figure, write_record                              a finished run as a record folder
    results    results_path, read_json, committed_runs                  the records shipped in the package
"""
from rwkvseg.report.cases import case_figure, case_rows, pick_cases, write_cases
from rwkvseg.report.record import curves_figure, write_record
from rwkvseg.report.results import committed_runs, latest_run_per_model, read_json, results_path

__all__ = ["case_figure", "case_rows", "committed_runs", "curves_figure", "latest_run_per_model", "pick_cases",
           "read_json", "results_path", "write_cases", "write_record"]
