#include "server/releases.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/log.h"
#include "storage/storage.h"

namespace ds {
namespace {

using nlohmann::json;

json ReleaseJson(const ObjectInfo& o) {
  // key = releases/<version>/<file>
  const std::string rest = o.key.substr(std::string(kReleasesArea).size() + 1);
  const size_t slash = rest.find('/');
  return json{{"version", rest.substr(0, slash)},
              {"file", rest.substr(slash + 1)},
              {"key", o.key},
              {"size", o.size},
              {"sha256", o.sha256},
              {"mtime_ns", o.mtime_ns}};
}

}  // namespace

absl::StatusOr<std::string> ReleaseKey(const std::string& version, const std::string& file) {
  if (!IsValidName(version)) {
    return absl::InvalidArgumentError(
        "release version must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.')");
  }
  if (!IsValidName(file)) {
    return absl::InvalidArgumentError(
        "release file name must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.')");
  }
  return absl::StrCat(std::string(kReleasesArea), "/", version, "/", file);
}

absl::StatusOr<std::string> PutRelease(ServerContext* ctx, const http::Request& req,
                                       const std::string& version, const std::string& file) {
  DS_ASSIGN_OR_RETURN(const std::string key, ReleaseKey(version, file));
  if (req.body.empty()) return absl::InvalidArgumentError("a release file must not be empty");
  const std::string sha256 = Sha256Hex(req.body);
  const std::string claimed = absl::AsciiStrToLower(req.Header("x-content-sha256"));
  if (!claimed.empty() && claimed != sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the body's SHA-256 is ", sha256, ", not the X-Content-SHA256 sent (", claimed, ")"));
  }
  auto existing = ctx->storage->Stat(key);
  if (existing.ok() && existing->sha256.empty()) {  // no recorded checksum: hash what is there
    DS_ASSIGN_OR_RETURN(FileDigest digest, ctx->storage->HashObject(key));
    existing->sha256 = digest.sha256;
  }
  if (existing.ok()) {
    if (existing->sha256 == sha256 && existing->size == req.body.size()) {
      json out = ReleaseJson(*existing);
      out["created"] = false;
      return out.dump();
    }
    return absl::AlreadyExistsError(absl::StrCat("release file ", key,
                                                 " exists with other content (SHA-256 ",
                                                 existing->sha256, "); release files are immutable: "
                                                 "publish a new version"));
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();

  // Storage takes files: stage the body under the data directory, then put it like any upload
  // (temp name, verify, rename / commit), and remove the staged copy whatever happens.
  const std::filesystem::path staging = std::filesystem::path(ctx->config.data_dir) / "staging";
  std::error_code ec;
  std::filesystem::create_directories(staging, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", staging.string(), ": ", ec.message()));
  const std::filesystem::path temp = staging / absl::StrCat("release-", NewUuid());
  DS_RETURN_IF_ERROR(WriteFileAtomically(temp, req.body, 0600));
  PutOptions po;
  po.expected_sha256 = sha256;
  po.mtime_ns = ctx->NowMs() * 1'000'000;
  po.run_id = "release0";
  absl::StatusOr<PutResult> put = ctx->storage->PutFile(key, temp, po);
  std::filesystem::remove(temp, ec);
  if (!put.ok()) return put.status();
  spdlog::info("release file {} stored ({} bytes, sha256 {})", key, put->info.size,
               put->info.sha256);
  json out = ReleaseJson(put->info);
  out["created"] = true;
  return out.dump();
}

absl::StatusOr<std::string> ListReleases(ServerContext* ctx, const http::Request& req) {
  std::string prefix(kReleasesArea);
  const std::string version = req.Query("version");
  if (!version.empty()) {
    if (!IsValidName(version)) return absl::InvalidArgumentError("invalid release version");
    absl::StrAppend(&prefix, "/", version);
  }
  std::vector<ObjectInfo> files;
  DS_RETURN_IF_ERROR(ctx->storage->List(prefix, [&](const ObjectInfo& o) {
    // Only releases/<version>/<file>: anything else under the prefix is not ours to show.
    if (o.key.rfind(prefix + "/", 0) != 0) return;
    const std::string rest = o.key.substr(std::string(kReleasesArea).size() + 1);
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) return;
    files.push_back(o);
  }));
  std::sort(files.begin(), files.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  json items = json::array();
  for (const ObjectInfo& o : files) items.push_back(ReleaseJson(o));
  return json{{"items", items}}.dump();
}

http::Response ServeRelease(ServerContext* ctx, const std::string& version,
                            const std::string& file) {
  absl::StatusOr<std::string> key = ReleaseKey(version, file);
  if (!key.ok()) return http::ProblemResponse(key.status());
  absl::StatusOr<ObjectInfo> info = ctx->storage->Stat(*key);
  if (absl::IsNotFound(info.status())) {
    return http::ProblemResponse(absl::NotFoundError(absl::StrCat("no release file ", *key)));
  }
  if (!info.ok()) return http::ProblemResponse(info.status(), /*expose_detail=*/false);
  absl::StatusOr<std::string> bytes = ctx->storage->ReadAll(*key, ctx->config.max_body_bytes);
  if (!bytes.ok()) return http::ProblemResponse(bytes.status(), /*expose_detail=*/false);
  if (Sha256Hex(*bytes) != info->sha256) {
    spdlog::error("release file {} does not match its recorded SHA-256 {}", *key, info->sha256);
    return http::ProblemResponse(
        absl::DataLossError(absl::StrCat("release file ", *key, " is damaged in storage")));
  }
  http::Response r;
  r.status = 200;
  r.content_type = "application/octet-stream";
  r.body = std::move(*bytes);
  r.headers.emplace_back("X-Content-SHA256", info->sha256);
  r.headers.emplace_back("Content-Disposition", absl::StrCat("attachment; filename=\"", file, "\""));
  return r;
}

}  // namespace ds
