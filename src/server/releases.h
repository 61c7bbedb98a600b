// Agent releases and other server-side files, kept in the same storage backend as the
// measurements under the reserved `releases/` prefix (storage is their only record, so a lost
// index loses none of them). Internal to src/server.
#pragma once

#include <string>

#include "common/status.h"
#include "http/http_types.h"
#include "server/context.h"

namespace ds {

// The storage key of a release file: "releases/<version>/<file>".
// InvalidArgument unless both are names ([A-Za-z0-9._-]{1,64}, not starting with '.').
[[nodiscard]] absl::StatusOr<std::string> ReleaseKey(const std::string& version,
                                                     const std::string& file);

// PUT /admin/releases/{version}/{file}: stores the request body. Release files are immutable:
// the same bytes again answer {"created": false}; different bytes under an existing name are
// AlreadyExists. An `X-Content-SHA256` header, when sent, must match the body (InvalidArgument
// otherwise, nothing stored).
[[nodiscard]] absl::StatusOr<std::string> PutRelease(ServerContext* ctx, const http::Request& req,
                                                     const std::string& version,
                                                     const std::string& file);

// GET /admin/releases[?version=]: {"items":[{version, file, key, size, sha256, mtime_ns}]},
// sorted by version then file.
[[nodiscard]] absl::StatusOr<std::string> ListReleases(ServerContext* ctx,
                                                       const http::Request& req);

// GET /agent/releases/{version}/{file} (and the admin equivalent): the file's bytes with
// X-Content-SHA256, or a problem response.
http::Response ServeRelease(ServerContext* ctx, const std::string& version,
                            const std::string& file);

}  // namespace ds
