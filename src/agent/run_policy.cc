#include "agent/run_policy.h"

#include "agent/server_api.h"

namespace ds {
bool MayCopy(const PolicyInputs& in) {
  return in.copy_option && !in.server_known_down && in.can_connect;
}

bool WantsOpeningCompare(const PolicyInputs& in) { return MayCopy(in) && !in.have_manifest; }

RunPolicy DecidePolicy(const PolicyInputs& in, const std::optional<OpeningAnswer>& opening) {
  RunPolicy p;
  p.offline_allowed = in.agent_writes;
  p.compare_attempts = in.server_known_down ? 1 : kServerAttempts;
  if (MayCopy(in) && in.have_manifest && in.stages_unnamed) p.copy = CopyMode::kDelta;
  if (opening) {
    if (opening->answered && opening->index_empty && opening->stages_unnamed) {
      p.copy = CopyMode::kFirstSync;
    }
    // It was just retried: the probe after the scan goes offline at once.
    if (opening->unreachable) p.compare_attempts = 1;
  }
  return p;
}

}  // namespace ds
