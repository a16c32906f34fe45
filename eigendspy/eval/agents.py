"""The agent under test in ``eigendspy eval``: built from a spec by the one participant factory.

Why only a re-export: GRPO builds its user from the same spec forms, and ``train`` sits below
``eval``, so the parser (`eigendspy.train.participant_spec`) and the factory for both sides
(`eigendspy.train.participants`) live there. Evaluation imports them from here so that an eval
script reads "the agent under test" without knowing where the factory lives.

Example::

    agent = build_assistant("model:runs/grpo/adapter", temperature=0.0, max_new_tokens=512, seed=0)
    episodes = run_episodes(domain, tasks, agent, OracleUser(), trials=4)
"""

from eigendspy.train.participant_spec import FORMS, SPEC_FORMS, ParticipantSpec
from eigendspy.train.participants import build_assistant, build_user

__all__ = ["FORMS", "SPEC_FORMS", "ParticipantSpec", "build_assistant", "build_user"]
