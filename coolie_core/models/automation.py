"""How a stage or dataflow is started in Dagster: declarative automation and default statuses.

``automation`` names one rule or a list of rules (any of them requests a run):

* ``on_cron``: once per tick of the dataflow's (or its stage's) ``schedule``, after its
  dependencies updated since the previous tick;
* ``eager``: whenever a dependency is updated (and on a new partition);
* ``on_missing``: when it (or a partition of it) was never materialised and its dependencies are.

``default_status`` says whether schedules and sensors start ``running`` or ``stopped`` on a fresh
Dagster instance (the UI toggle wins afterwards).
"""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = ["AUTOMATION_RULES", "Automation", "AutomationRule", "DefaultStatus"]

AutomationRule = Literal["on_cron", "eager", "on_missing"]
AUTOMATION_RULES: tuple[AutomationRule, ...] = ("on_cron", "eager", "on_missing")

DefaultStatus = Literal["running", "stopped"]
"""Whether a schedule or sensor starts running on a fresh Dagster instance."""


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _no_repeats(value: list[AutomationRule]) -> list[AutomationRule]:
    repeated = sorted({rule for rule in value if value.count(rule) > 1})
    if repeated:
        raise ValueError(f"automation rules listed twice: {', '.join(repeated)}")
    return value


Automation = Annotated[
    list[AutomationRule],
    BeforeValidator(_as_list),
    Field(min_length=1),
    AfterValidator(_no_repeats),
]
"""One rule (``eager``) or a list of rules (``[on_cron, on_missing]``), combined with OR."""
