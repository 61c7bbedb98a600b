// Object metadata kept beside the objects, for shares without user xattrs (Azure Files, most
// SMB and FUSE mounts): one small record per object under the reserved area,
//   <root>/.datasync/meta/<key>     "datasync-meta 1 <sha256> <size> <stored ns> <source ns>\n"
// written in place with one short write: a reader sees a whole record, or a torn or empty one,
// which is well-formed by no means (it must end in a newline after six fields) and reads as none.
// A record describes the object only while the object's size and
// mtime are the ones it recorded (an in-place edit, or a crash between the record and the
// object's rename, makes it stale: the object is then hashed again). Records are never listed as
// objects; a record whose object is gone is harmless (a scrub reports it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace ds {

struct SidecarMeta {
  std::string sha256;           // lowercase hex of the object's content
  uint64_t size = 0;            // bytes of the object when recorded
  int64_t stored_mtime_ns = 0;  // the object's mtime on the share as read back (Unix ns)
  int64_t source_mtime_ns = 0;  // the source file's mtime (Unix ns), which the share may not keep
};

// Name of the sidecar folder inside the reserved area.
inline constexpr char kSidecarDir[] = "meta";

// Writes the record of `key` below `root`. `durable`: fsyncs the record and its folder before
// returning (shares); false leaves that to the caller's filesystem flush (syncfs).
[[nodiscard]] absl::Status WriteSidecar(const std::string& root, const std::string& key,
                                        const SidecarMeta& meta, bool durable);

// The record of `key`, if there is a well-formed one (nothing is trusted here: the caller checks
// size and mtime against the object).
[[nodiscard]] std::optional<SidecarMeta> ReadSidecar(const std::string& root,
                                                     const std::string& key);

// Removes the record of `key` (OK when there is none).
[[nodiscard]] absl::Status RemoveSidecar(const std::string& root, const std::string& key);

}  // namespace ds
