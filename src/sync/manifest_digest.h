// The digest of a job's whole manifest, sent before the file list so that a cycle with nothing
// new costs O(1) bytes to the server (see docs/performance.md, "No-op cycle").
#pragma once

#include <string>
#include <vector>

#include "protocol/messages.h"
#include "sync/manifest.h"

namespace ds {

// SHA-256 (lowercase hex) over "datasync-manifest-v1\n" followed by, for each entry in order,
// path '\0' size '\0' mtime_ns '\0' sha256 '\n' (numbers in decimal). Streams: O(1) memory
// beyond the input.
// REQUIRES: `files` sorted by path (byte-wise) without duplicates, as ScanJob returns them.
[[nodiscard]] std::string ManifestDigest(const std::vector<protocol::ManifestEntry>& files);
// The same digest over a compact manifest (sorted by construction). REQUIRES: nothing released.
[[nodiscard]] std::string ManifestDigest(const Manifest& files);

}  // namespace ds
