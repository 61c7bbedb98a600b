// What the filesystem or share under a directory storage root can do, found out by trying it in
// a scratch folder of the reserved area (.datasync/.dstmp-probe-<hex>/) that is removed again,
// files closed before they are unlinked (SMB refuses to unlink an open file).
#pragma once

#include <string>

#include "common/status.h"
#include "platform/directory.h"
#include "storage/storage.h"

namespace ds {

struct DirProbe {
  StorageFeatures features;
  // One syncfs() makes everything written to the root's filesystem durable (local block
  // filesystems); network shares and FUSE take an fsync per file and per directory instead.
  bool syncfs_flushes = false;
  std::string filesystem;  // what statfs says the root is ("ext4", "fuse", "nfs", ...)
};

// Probes the directory `root` (absolute, normalised), open as `root_dir`.
// `try_unnamed` false skips the O_TMPFILE probe (features.unnamed_files false).
// The result for one root (by device and inode) is kept for the life of the process and logged
// once, at its first probe: storage is opened for every run of an agent.
// Errors: those of creating the scratch folder (the root is not writable: PermissionDenied,
// Unavailable when unreachable).
[[nodiscard]] absl::StatusOr<DirProbe> ProbeDirStorage(const platform::Directory& root_dir,
                                                       const std::string& root, bool try_unnamed);

}  // namespace ds
