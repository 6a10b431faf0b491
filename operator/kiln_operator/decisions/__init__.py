"""Pure decisions: functions from observed state (and an injected clock) to verdicts."""
