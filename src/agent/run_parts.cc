#include "agent/run_parts.h"

#include "absl/strings/str_cat.h"
#include "agent/upload_outcome.h"
#include "common/log.h"

namespace ds {

void RecordPutError(const RunContext& run, const absl::Status& st, protocol::FileResult* r) {
  SetPutError(st, r);
  if (r->status == "skipped") {
    spdlog::info("run={} {} skipped: {}", run.run_id, r->path, r->error);
    if (run.options.counters != nullptr) ++run.options.counters->files_done;
  } else {
    spdlog::warn("run={} upload of {} failed: {}", run.run_id, r->path, r->error);
  }
}

PutOptions RunPutOptions(const RunContext& run, int64_t mtime_ns) {
  PutOptions po;
  po.mtime_ns = mtime_ns;
  po.run_id = run.run_id;
  po.rate_limiter = run.options.rate_limiter;
  po.block_parallelism = run.options.block_parallelism;
  po.cancel = run.options.stop;
  po.verify = run.options.verify;
  return po;
}

Storage* RunStorage::Open(const RunContext& run, const std::string& url) {
  std::call_once(opened_, [&] {
    absl::StatusOr<StorageUrl> parsed = ParseStorageUrl(url);
    absl::StatusOr<std::unique_ptr<Storage>> st =
        parsed.ok() ? OpenStorage(*parsed) : parsed.status();
    if (st.ok() && !(*st)->Features().direct_writes) {
      st = absl::FailedPreconditionError(
          absl::StrCat(parsed->text,
                       " takes uploads only with a write grant from the server, and it sent none"));
    }
    if (st.ok()) {
      storage_ = std::move(*st);
    } else {
      status_ = st.status();
      spdlog::error("run={} storage {} unusable: {}", run.run_id, url, status_.message());
    }
  });
  return storage_.get();
}

}  // namespace ds
