// Replays what the journal holds that the server has not acknowledged. Internal to src/agent.
#pragma once

#include <atomic>
#include <string>

#include "agent/journal.h"
#include "agent/server_api.h"
#include "common/status.h"

namespace ds {

// Reports what the journal holds that the server has not acknowledged: interrupted runs (their
// temp files removed, closed as abandoned with every result they produced) and offline runs
// (compared, then completed). Unavailable when the server stops answering; the rest stays.
// When storage cannot be opened to remove a run's temp files, the run is reported all the same
// and its in-flight marks are kept in the journal (`*temps_kept` set true, if given): the caller
// then calls RemoveInterruptedTemps later.
[[nodiscard]] absl::Status ReplayJournal(AgentServer* server, Journal* journal,
                                         const std::string& storage_url,
                                         const std::atomic<bool>* stop, bool* temps_kept = nullptr);

}  // namespace ds
