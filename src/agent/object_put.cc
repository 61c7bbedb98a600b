#include "agent/object_put.h"

#include <set>

#include "common/log.h"
#include "common/time_util.h"
#include "storage/azblob/sas.h"

namespace ds {
namespace {

// How long staged blocks are remembered (the service keeps uncommitted blocks 7 days).
constexpr int64_t kStagedBlocksLifetimeMs = int64_t{6} * 24 * 3600 * 1000;

// Staged blocks are journaled: after a restart the write-only SAS cannot list them, the journal
// can, and the upload goes on from there instead of from the first block.
StagedBlockMemory JournaledBlocks(const RunContext& run, const std::string& key,
                                  const std::string& sha256) {
  Journal* journal = run.journal;
  const std::string& run_id = run.run_id;
  StagedBlockMemory memory;
  memory.recall = [=]() -> std::set<std::string> {
    auto ids =
        journal->StagedBlocks(key, sha256, SystemClock()->NowUnixMs() - kStagedBlocksLifetimeMs);
    if (!ids.ok()) spdlog::warn("run={} journal: {}", run_id, ids.status());
    return ids.value_or(std::set<std::string>{});
  };
  memory.remember = [=](const std::string& id) {
    absl::Status st = journal->RememberStagedBlock(key, sha256, id, SystemClock()->NowUnixMs());
    if (!st.ok()) spdlog::warn("run={} journal: {}", run_id, st);
  };
  memory.forget = [=]() {
    absl::Status st =
        journal->ForgetStagedBlocks(key, SystemClock()->NowUnixMs() - kStagedBlocksLifetimeMs);
    if (!st.ok()) spdlog::warn("run={} journal: {}", run_id, st);
  };
  return memory;
}

void LogPut(const RunContext& run, const std::string& key, const SasPutStats& stats) {
  if (stats.blocks_already_staged > 0) {
    spdlog::info("run={} {} resumed: {} of {} block(s) were staged before, {} sent now", run.run_id,
                 key, stats.blocks_already_staged, stats.blocks_total, stats.blocks_uploaded);
  }
  spdlog::debug("run={} {} uploaded in {} block(s) ({} at once at most), {} grant renewal(s)",
                run.run_id, key, stats.blocks_total, stats.max_blocks_in_flight,
                stats.sas_renewals);
}

}  // namespace

absl::StatusOr<PutResult> PutWithGrant(const RunContext& run, const protocol::UploadInstruction& u,
                                       const std::filesystem::path& source, const PutOptions& po,
                                       LazySession* grants, std::string* kept_version) {
  *kept_version = u.kept_version;
  auto renew = [&]() -> absl::StatusOr<std::string> {
    AgentServer* session = grants->get();
    if (session == nullptr) {
      return absl::FailedPreconditionError("the write grant expired and cannot be renewed");
    }
    DS_ASSIGN_OR_RETURN(protocol::GrantResponse grant,
                        session->Grant(run.run_id, protocol::GrantRequest{u.path}));
    if (kept_version->empty()) *kept_version = grant.kept_version;
    spdlog::debug("run={} write grant for {} renewed", run.run_id, u.key);
    return std::move(grant.url);
  };
  std::string url = u.url;
  if (u.expires_at_ms != 0 && SystemClock()->NowUnixMs() + 1000 >= u.expires_at_ms) {
    DS_ASSIGN_OR_RETURN(url, renew());
  }
  StagedBlockMemory memory = JournaledBlocks(run, u.key, po.expected_sha256);
  SasPutStats stats;
  auto put = PutFileWithSas(url, source, po, run.options.block_size, renew, &stats,
                            po.expected_sha256.empty() ? nullptr : &memory);
  if (put.ok()) LogPut(run, u.key, stats);
  return put;
}

}  // namespace ds
