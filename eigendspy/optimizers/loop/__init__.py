"""The closed loop: synthesize a round, attribute its rejections to roles, recompile the weakest, repeat.

- `config`: `EvolveLoopConfig`, the loop's settings.
- `datasets`: a round's stored rejections -> per-role evidence and train/val examples.
- `select`: rejection shares and the roles a round recompiles.
- `versions`: content hashes of compiled programs, atomic saves by hash.
- `workflow`: knob proposals by a DSPy module (rules as fallback), kept only if yield improves.
- `report`: per-round and whole-loop reports (JSON, markdown, plot).
- `loop`: `evolve_loop`, resumable round by round.
"""

from eigendspy.optimizers.loop.config import PIPELINE_ORDER, EvolveLoopConfig
from eigendspy.optimizers.loop.loop import engine_config, evolve_loop, load_loop_config
from eigendspy.optimizers.loop.report import CompiledRole, EvolveLoopReport, RoundReport
from eigendspy.optimizers.loop.versions import compiled_versions, state_hash
from eigendspy.optimizers.loop.workflow import WorkflowProposer

__all__ = ["PIPELINE_ORDER", "CompiledRole", "EvolveLoopConfig", "EvolveLoopReport", "RoundReport",
           "WorkflowProposer", "compiled_versions", "engine_config", "evolve_loop", "load_loop_config",
           "state_hash"]
