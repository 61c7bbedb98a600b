// How a put that did not land counts in a run, decided in one place. Internal to src/agent.
#pragma once

#include <string>

#include "common/status.h"
#include "protocol/messages.h"

namespace ds {

// Fills `r` for a put that failed with `st` (not OK): a name refusal (the destination cannot hold
// the file's name, or another spelling of it is stored: IsNameRefusal) *skips* the file, with
// the refusal as its reason; the storage is fine and the run goes on. Anything else fails it.
// The file's manifest fields (path, mtime) are kept for a skip and the mtime cleared for a failure.
void SetPutError(const absl::Status& st, protocol::FileResult* r);

// What a declined copy of a file while scanning (Storage::StagePutFd with unnamed_only) means.
enum class CopyDecline {
  kThisFile,     // only this file goes the usual way (hashed now, uploaded after the scan)
  kStopCopying,  // the storage cannot take such copies: the rest of the scan copies nothing
};
// kThisFile for a source that changed, a full budget of unnamed files, an object under the key,
// a cancelled copy and a name refusal (the usual upload skips that file); kStopCopying otherwise.
[[nodiscard]] CopyDecline ClassifyCopyDecline(const absl::Status& st);

}  // namespace ds
