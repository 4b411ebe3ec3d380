"""Closed-loop analytics: what each message earned, the CRM metrics, cohorts and funnel,
predictive CLV and experiments. It reads the store; the message facts and attribution it
keeps are folded in by the pipeline in the transaction that stores each event."""
