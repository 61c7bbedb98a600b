// Directory / mounted-share backend: local disk, NFS, SMB or an Azure Files mount.
//
// Layout under the root directory:
//   <key>                                         the object, a regular file
//   <dir of key>/.dstmp-<tag8>-<hash16>           in-flight temp file (never listed); group
//                                                 commits on local filesystems stage unnamed
//                                                 O_TMPFILE files instead (linked at commit)
//   .datasync/versions/<key>/<UTC>-<sha12>[-N]    replaced objects kept aside (never listed)
//   .datasync/meta/<key>                          sidecar metadata record, on shares without
//                                                 user xattrs (see dir_sidecar.h)
// Object metadata lives in the file's mtime and in the xattr user.datasync.meta (41 bytes:
// version 1, SHA-256 binary, recorded mtime as int64 Unix ns little-endian; small enough to stay
// inside an ext4 inode). Objects written before it carry user.datasync.sha256 (lowercase hex) and
// user.datasync.mtime_ns (decimal Unix ns), still read. Version 2 (49 bytes) appends the source
// mtime where the share keeps a coarser one. Shares without user xattrs keep the same facts in
// sidecar records. What the share can do is probed once at open (dir_probe.h, Features()).
//
// Keys are resolved component by component without following symlinks: a symlink inside the
// root is never traversed or written through.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "storage/storage.h"

namespace ds {

// Opens (creating if needed, like mkdir -p) the directory `root`. PermissionDenied / NotFound
// when unusable. The root path is resolved again on every call, so a share mounted after
// opening is picked up; a root that has vanished gives Unavailable.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(const std::string& root);

struct DirStorageOptions {
  // Group commit (StagePut/CommitPuts) on a local filesystem stages into unnamed O_TMPFILE files
  // and links them under their names at commit. Used only where a probe at open succeeds; false
  // forces temp names (tests of that path).
  bool unnamed_files = true;
};
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(
    const std::string& root, const DirStorageOptions& options);

// Keys ('/'-joined, relative to `root`) of leftover temp files (names starting with kTempPrefix)
// below `root`/`prefix` (all of the root when `prefix` is empty) and below the matching part of
// the versions area (reported as ".datasync/versions/..."). In-flight uploads are included: the
// caller decides what is stale. A missing prefix directory gives an empty list.
// InvalidArgument for a bad prefix; Unavailable when the root is unreachable.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListTempFiles(const std::string& root,
                                                                     const std::string& prefix);

}  // namespace ds
