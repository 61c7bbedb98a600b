// An upload to object storage (Azure Blob) with the write grant of its compare instruction,
// renewed through the server when it expires. Internal to src/agent.
#pragma once

#include <filesystem>
#include <memory>

#include "agent/run_parts.h"
#include "agent/server_api.h"
#include "storage/storage.h"

namespace ds {

// Uploads the file of `u` with the write grant (URL) of the instruction, asking the server for a
// fresh one (Grant, on `*grants`) when it expired while the
// file waited its turn or expires during the upload. Staged blocks are journaled, so that an
// upload cut short goes on from them next time. `*kept_version` gets the key under which the
// server kept the object this upload replaces, if any. The URL is a secret: it is never logged
// or journaled. FailedPrecondition when the grant expired and no session can be made.
[[nodiscard]] absl::StatusOr<PutResult> PutWithGrant(const RunContext& run,
                                                     const protocol::UploadInstruction& u,
                                                     const std::filesystem::path& source,
                                                     const PutOptions& po, LazySession* grants,
                                                     std::string* kept_version);

}  // namespace ds
