"""What a generation run delivered against its plan, said once, by cause, for every backend.

A run that stores fewer images than planned (budget reached, refusals, errors) used to exit 0,
and `dvc repro` went on with a smaller synthetic set than the arms and dose levels assume. Here
the request log of the run (one row per planned image: status, detail, and for an error no retry
can fix, the hint) is compared with the plan, and the stage stops unless the user accepted a
partial set on purpose (`generate.allow_partial`). Zero images is an error in any case.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.core.errors import DermsynthError

# The status of one planned image, the same words for every backend (and in requests.csv).
OK, ERROR = "ok", "error"
BLOCKED, SAFETY_BLOCKED = "moderation_blocked", "safety_blocked"  # refused by the API / the pipeline's checker
SKIPPED = "skipped_budget"  # not sent: the next call would have passed max_usd
FATAL, NOT_SENT = "fatal_error", "not_sent"  # an error no retry can fix, and the requests it stopped
REFUSALS = (BLOCKED, SAFETY_BLOCKED)
CAUSES = {  # status -> how the summary names it
    SKIPPED: "budget (generate.openai.max_usd)",
    BLOCKED: "moderation refusal",
    SAFETY_BLOCKED: "safety checker",
    NOT_SENT: "not sent",
}
RETRY_HINT = "re-run to retry what failed (stored images are not paid or made again)"
REFUSAL_HINT = (
    "refusals are remembered and never retried, so a re-run asks nothing for them: "
    "`dermsynth cache forget-refusals` makes the next run ask again (each request paid), "
    "or change the seed's prompt (noun, body part in generate.annotations)"
)


class ShortDelivery(DermsynthError):
    """A generation run stored fewer images than planned."""


def error_kind(detail: str) -> str:
    """'HTTP 500 server_error' or 'malformed response' from a detail like 'HTTP 500 server_error: ...'."""
    return (detail.split(":", 1)[0] or "error").strip() or "error"


def causes(log: pd.DataFrame) -> list[str]:
    """One line per cause of a missing image: how many, and the first message of that cause."""
    missed = log[log["status"] != OK]
    labels = [
        CAUSES.get(status, f"error {error_kind(str(detail))}")
        for status, detail in zip(missed["status"], missed["detail"], strict=True)
    ]
    lines = []
    for label, group in missed.assign(cause=labels).groupby("cause", sort=False):
        lines.append(f"{label}: {len(group)} (first: {group['detail'].iloc[0]})")
    return lines


def fatal_message(log: pd.DataFrame, log_path: Path) -> str | None:
    """The one-line message of an error that stopped the run, or None."""
    fatal = log[log["status"] == FATAL]
    if fatal.empty:
        return None
    row = fatal.iloc[0]
    model = f" (model {row['model']})" if "model" in row and str(row["model"]) else ""
    unsent = int((log["status"] == NOT_SENT).sum())
    return (
        f"generate stopped at an error no retry can fix: {row['detail']}{model}. {row.get('hint', '')}. "
        f"{unsent} more requests were not sent; log: {log_path}"
    )


def next_step(log: pd.DataFrame) -> str:
    """How to get the missing images: a re-run for errors and the budget; for refusals, re-running does nothing."""
    missed = log.loc[log["status"] != OK, "status"]
    refused = missed.isin(REFUSALS)
    if refused.all():
        return REFUSAL_HINT
    return RETRY_HINT + ("; " + REFUSAL_HINT if refused.any() else "")


def check(planned: int, log: pd.DataFrame, allow_partial: bool, log_path: Path) -> str:
    """The summary line of a run that delivered enough; ShortDelivery (or the fatal error) otherwise."""
    kept = int((log["status"] == OK).sum()) if len(log) else 0
    fatal = fatal_message(log, log_path) if len(log) else None
    if fatal:
        raise ShortDelivery(fatal)
    if planned == 0:
        raise ShortDelivery("generate: no seeds of generate.conditions to make images from (check split and seeds)")
    if kept == planned:
        return f"generate: {kept} of {planned} planned images stored"
    summary = f"{kept} of {planned} planned images stored; " + "; ".join(causes(log)) + f"; log: {log_path}"
    retry = next_step(log)
    if kept == 0:
        raise ShortDelivery(f"generate: nothing to curate, {summary}. Fix the cause above, then {retry}")
    if not allow_partial:
        raise ShortDelivery(
            f"generate: short of the plan, {summary}. Either {retry}, or set generate.allow_partial: true "
            "to go on with a partial set (curate and train then report what is missing)"
        )
    return f"generate: WARNING partial set accepted (generate.allow_partial): {summary}"
