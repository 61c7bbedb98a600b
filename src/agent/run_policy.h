// How one run goes, decided once before it scans: whether it copies files while scanning them,
// whether it may sync offline, how hard it tries to reach the server. From the run's options,
// what the storage says it can do, and the server's answer to the opening compare. Internal to
// src/agent.
#pragma once

#include <optional>

namespace ds {

// Copying while scanning (docs/architecture.md, "One run"): each file the scan must read is
// staged into storage as it is hashed, and the copies are compared in batches during the scan.
enum class CopyMode {
  kOff,
  kFirstSync,  // the job's index is empty: every file is new
  kDelta,      // new and changed files, compared as delta batches against the previous manifest
};

// What a run knows before it asks the server anything.
struct PolicyInputs {
  bool copy_option = true;         // JobRunOptions::copy_while_scanning
  bool server_known_down = false;  // JobRunOptions::server_known_down
  bool can_connect = false;        // a factory for more server sessions was given
  bool have_manifest = false;      // the job's previous manifest (hash cache) is not empty
  bool agent_writes = false;       // the storage is written by the agent itself
  bool stages_unnamed = false;     // ... and stages unnamed files (StorageProfile)
};

// The server's answer to the opening compare (asked only when WantsOpeningCompare()).
struct OpeningAnswer {
  bool answered = false;     // the server answered
  bool unreachable = false;  // it could not be reached (after retries)
  bool index_empty = false;  // with answered: the job's index holds no file
  // with answered: the storage named in the answer stages unnamed files (may differ from the
  // one the options named)
  bool stages_unnamed = false;
};

struct RunPolicy {
  CopyMode copy = CopyMode::kOff;
  // An unreachable server does not fail the run: the agent writes the storage itself, plans
  // from what the index is known to hold, and journals the results for replay.
  bool offline_allowed = false;
  int compare_attempts = 4;  // 1 when the server is known to be down: go offline at once
};

// Whether the run may copy while scanning at all (asks the storage only then).
[[nodiscard]] bool MayCopy(const PolicyInputs& in);

// Whether the run first sends an opening compare (no files) to learn whether the job's index is
// empty: only an agent without a previous manifest that may copy while scanning.
[[nodiscard]] bool WantsOpeningCompare(const PolicyInputs& in);

// The policy. `opening` is the answer to the opening compare when one was sent.
[[nodiscard]] RunPolicy DecidePolicy(const PolicyInputs& in,
                                     const std::optional<OpeningAnswer>& opening);

}  // namespace ds
