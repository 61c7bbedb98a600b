// The agent's identity at rest: runner id + API key (or a pending enrollment), encrypted with a
// machine-bound key (AES-256-GCM, key = HKDF-SHA256 of /etc/machine-id and a per-file salt),
// stored as <state-dir>/agent.state with mode 0600.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace ds {

struct AgentState {
  std::string server_url;
  std::string name;
  // While enrolling:
  std::string enrollment_id;
  std::string enrollment_secret;
  // Once approved:
  int64_t runner_id = 0;
  std::string api_key;

  bool enrolled() const { return !api_key.empty(); }
};

std::string AgentStatePath(const std::string& state_dir);

// NotFound when there is no state file (a fresh agent). DataLoss when it exists but cannot be
// decrypted or parsed (corrupt, or copied from another machine); the message says how to re-enroll.
[[nodiscard]] absl::StatusOr<AgentState> LoadAgentState(const std::string& state_dir);
[[nodiscard]] absl::Status SaveAgentState(const std::string& state_dir, const AgentState& state);
// Renames the state file aside (agent.state.bad-<time>) so the agent enrolls afresh.
[[nodiscard]] absl::Status MoveAgentStateAside(const std::string& state_dir);

}  // namespace ds
