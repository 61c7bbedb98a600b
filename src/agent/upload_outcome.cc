#include "agent/upload_outcome.h"

#include "common/files.h"
#include "storage/storage.h"

namespace ds {

void SetPutError(const absl::Status& st, protocol::FileResult* r) {
  r->error = std::string(st.message());
  if (IsNameRefusal(st) || (absl::IsAborted(st) && st.message() == kChangedSinceScan)) {
    r->status = "skipped";
    return;
  }
  r->status = "failed";
  r->mtime_ns = 0;
}

CopyDecline ClassifyCopyDecline(const absl::Status& st) {
  if (IsNameRefusal(st) || absl::IsAborted(st) || absl::IsResourceExhausted(st) ||
      absl::IsCancelled(st) || absl::IsAlreadyExists(st)) {
    return CopyDecline::kThisFile;
  }
  return CopyDecline::kStopCopying;
}

}  // namespace ds
