"""The runtime every other layer stands on: tasks, messages, tools, the copy-on-write DB state, domains,
environments, participants, the orchestrator that runs episodes, oracle players and the one rendering
the trained model sees. No LM, no DSPy, no torch here.
"""

from eigendspy.core.domain import Domain, Toolkit
from eigendspy.core.environment import Environment
from eigendspy.core.ids import IdSource
from eigendspy.core.messages import Message, TerminationReason, ToolCall
from eigendspy.core.oracle import OracleAssistant, OracleUser
from eigendspy.core.orchestrator import Episode, EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.participants import (
    FunctionParticipant,
    InfrastructureError,
    Participant,
    TokenTrace,
    Turn,
    TurnContext,
)
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord, Usage, Verdict
from eigendspy.core.render import ChatPrompt, MalformedToolCall, agent_chat, side_chat, training_messages, user_chat
from eigendspy.core.state import BaseDB, DBState, tau2_hash
from eigendspy.core.task import (
    Action,
    EvaluationCriteria,
    InitialState,
    RewardType,
    StatePredicate,
    Task,
    UserScenario,
    load_tasks,
)
from eigendspy.core.tool import ToolError, ToolKind, ToolSpec, assertion, env_function, tool

__all__ = [
    "Action", "BaseDB", "ChatPrompt", "DBState", "DialogueRecord", "Domain", "Environment", "Episode",
    "EpisodeConfig", "EvaluationCriteria", "EvaluationPlan", "FunctionParticipant", "IdSource",
    "InfrastructureError", "InitialState", "MalformedToolCall", "Message", "OracleAssistant", "OracleUser",
    "Orchestrator",
    "Participant", "PlanPair", "RewardType", "Stage", "StatePredicate", "SynthesisPlan", "Task", "TaskRecord",
    "TerminationReason", "TokenTrace", "ToolCall", "ToolError", "ToolKind", "ToolSpec", "Toolkit", "Turn",
    "TurnContext", "Usage", "UserScenario", "Verdict", "agent_chat", "assertion", "env_function", "load_tasks",
    "run_sync", "side_chat", "tau2_hash", "tool", "training_messages", "user_chat",
]
