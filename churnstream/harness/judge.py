"""The pass/fail criteria of a harness run, each with the figure it was judged on. Pure."""

from __future__ import annotations

from typing import Any

from churnstream.harness import figures
from churnstream.harness.analysis import Criterion
from churnstream.harness.plan import RunPlan, Subject


def judge(results: dict[str, Any], plan: RunPlan, failures: list[str]) -> list[Criterion]:
    """The pass/fail criteria, each with the figure it was judged on."""
    producer = results["producer"]
    criteria = [Criterion("harness ran cleanly", not failures, "; ".join(failures) or "no harness errors")]
    criteria.append(
        Criterion(
            "producer acknowledged every event",
            producer["exit_code"] == 0
            and producer["sent"] is not None
            and producer["acknowledged"] == producer["sent"],
            f"exit {producer['exit_code']}, sent {producer['sent']}, acknowledged {producer['acknowledged']}",
        )
    )
    if plan.subject != Subject.FLOOR:
        codes = [c["exit_code"] for c in results["consumers"]]
        criteria.append(Criterion("no consumer crashed", all(code == 0 for code in codes), f"exit codes {codes}"))
    lost = f"lost {figures.count(results['lost'])} of {figures.count(results['raw_records'])}"
    criteria.append(Criterion("lost = 0", results["lost"] == 0, lost))
    criteria.append(
        Criterion(
            "duplicated = 0",
            results["duplicated"] == 0 and results["duplicate_event_ids"] == 0,
            f"duplicated {results['duplicated']}, duplicate event ids {results['duplicate_event_ids']}",
        )
    )
    if plan.subject == Subject.CONSUMER:
        criteria += _dead_letter_criteria(results, plan)
    if plan.subject.scores:
        criteria += _scoring_criteria(results)
    criteria += _goal_criteria(results, plan)
    return criteria


def _dead_letter_criteria(results: dict[str, Any], plan: RunPlan) -> list[Criterion]:
    """What only our consumer is held to: its dead letters (the baselines have no dead-letter path)."""
    criteria = [
        Criterion(
            "dead letters = injected malformed events",
            results["dead_lettered"] == plan.inject_bad,
            f"dead-lettered {results['dead_lettered']}, injected {plan.inject_bad}",
        )
    ]
    mismatched = results["dead_letter_bytes_mismatch"]
    criteria.append(
        Criterion(
            "dead letters keep the original key and value bytes",
            mismatched == 0,
            f"{mismatched} of {results['dead_lettered']} dead letters differ from the raw record they name",
        )
    )
    return criteria


def _scoring_criteria(results: dict[str, Any]) -> list[Criterion]:
    """What a subject that scores with the served model is held to (ours and Quix Streams'): every event
    scored, the model's own figures, well-formed outputs."""
    valid_sent = results["producer"]["acknowledged"]
    criteria = [
        Criterion(
            "every valid event scored",
            valid_sent is not None and results["scored"] >= valid_sent,
            f"scored {results['scored']}, valid events acknowledged {valid_sent}",
        )
    ]
    sample = results["sample_check"]
    criteria.append(
        Criterion(
            "published probabilities equal offline predict_proba",
            sample["checked"] > 0 and sample["mismatches"] == 0,
            f"{sample['checked']} checked, {sample['mismatches']} mismatches, "
            f"max |diff| {figures.tiny(sample['max_abs_diff'])}",
        )
    )
    criteria.append(
        Criterion("outputs well-formed", results["malformed_outputs"] == 0, f"{results['malformed_outputs']} malformed")
    )
    return criteria


def _goal_criteria(results: dict[str, Any], plan: RunPlan) -> list[Criterion]:
    """The goals a single run may be given on the command line (--p99-goal-ms, --batch-goal-s)."""
    criteria: list[Criterion] = []
    if plan.p99_goal_ms is not None:
        p99 = results["latency_ms"]["p99"]
        criteria.append(
            Criterion(
                f"p99 end-to-end latency <= {plan.p99_goal_ms:g} ms",
                p99 is not None and p99 <= plan.p99_goal_ms,
                f"p99 {figures.ms(p99)}",
            )
        )
    if plan.batch_goal_s is not None:
        readable = results["all_readable_after_producer_start_s"]
        criteria.append(
            Criterion(
                f"all outcomes readable within {plan.batch_goal_s:g} s of the producer's start",
                readable is not None and readable <= plan.batch_goal_s,
                figures.seconds(readable),
            )
        )
    return criteria
