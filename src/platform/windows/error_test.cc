#include "platform/error.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "platform/windows/internal.h"

namespace ds::platform {
namespace {

using internal::Win32ErrorToStatus;

struct Mapping {
  DWORD err;
  const char* name;
  absl::StatusCode code;
  ErrorKind kind;
};

TEST(Win32ErrorToStatus, MapsEachCodeLikeErrno) {
  using C = absl::StatusCode;
  using K = ErrorKind;
  const std::vector<Mapping> mappings = {
      {ERROR_FILE_NOT_FOUND, "FILE_NOT_FOUND", C::kNotFound, K::kOther},
      {ERROR_PATH_NOT_FOUND, "PATH_NOT_FOUND", C::kNotFound, K::kOther},
      {ERROR_INVALID_DRIVE, "INVALID_DRIVE", C::kNotFound, K::kOther},
      {ERROR_DIRECTORY, "DIRECTORY", C::kNotFound, K::kNotDirectory},
      {ERROR_ACCESS_DENIED, "ACCESS_DENIED", C::kPermissionDenied, K::kOther},
      {ERROR_WRITE_PROTECT, "WRITE_PROTECT", C::kPermissionDenied, K::kOther},
      {ERROR_PRIVILEGE_NOT_HELD, "PRIVILEGE_NOT_HELD", C::kPermissionDenied, K::kOther},
      {ERROR_ALREADY_EXISTS, "ALREADY_EXISTS", C::kAlreadyExists, K::kOther},
      {ERROR_FILE_EXISTS, "FILE_EXISTS", C::kAlreadyExists, K::kOther},
      {ERROR_DISK_FULL, "DISK_FULL", C::kResourceExhausted, K::kOther},
      {ERROR_HANDLE_DISK_FULL, "HANDLE_DISK_FULL", C::kResourceExhausted, K::kOther},
      {ERROR_DISK_QUOTA_EXCEEDED, "DISK_QUOTA_EXCEEDED", C::kResourceExhausted, K::kOther},
      {ERROR_TOO_MANY_OPEN_FILES, "TOO_MANY_OPEN_FILES", C::kResourceExhausted, K::kOther},
      {ERROR_NOT_ENOUGH_MEMORY, "NOT_ENOUGH_MEMORY", C::kResourceExhausted, K::kOther},
      {ERROR_OUTOFMEMORY, "OUTOFMEMORY", C::kResourceExhausted, K::kOther},
      {ERROR_NOT_ENOUGH_QUOTA, "NOT_ENOUGH_QUOTA", C::kResourceExhausted, K::kOther},
      {ERROR_SHARING_VIOLATION, "SHARING_VIOLATION", C::kUnavailable, K::kSharingViolation},
      {ERROR_LOCK_VIOLATION, "LOCK_VIOLATION", C::kUnavailable, K::kBusy},
      {ERROR_BUSY, "BUSY", C::kUnavailable, K::kBusy},
      {ERROR_PIPE_BUSY, "PIPE_BUSY", C::kUnavailable, K::kBusy},
      {ERROR_DELETE_PENDING, "DELETE_PENDING", C::kUnavailable, K::kBusy},
      {ERROR_USER_MAPPED_FILE, "USER_MAPPED_FILE", C::kUnavailable, K::kBusy},
      {ERROR_OPERATION_ABORTED, "OPERATION_ABORTED", C::kUnavailable, K::kOther},
      {ERROR_BAD_NETPATH, "BAD_NETPATH", C::kUnavailable, K::kUnreachable},
      {ERROR_NETNAME_DELETED, "NETNAME_DELETED", C::kUnavailable, K::kUnreachable},
      {ERROR_UNEXP_NET_ERR, "UNEXP_NET_ERR", C::kUnavailable, K::kUnreachable},
      {ERROR_BAD_NET_NAME, "BAD_NET_NAME", C::kUnavailable, K::kUnreachable},
      {ERROR_NETWORK_BUSY, "NETWORK_BUSY", C::kUnavailable, K::kUnreachable},
      {ERROR_DEV_NOT_EXIST, "DEV_NOT_EXIST", C::kUnavailable, K::kUnreachable},
      {ERROR_REM_NOT_LIST, "REM_NOT_LIST", C::kUnavailable, K::kUnreachable},
      {ERROR_NETWORK_UNREACHABLE, "NETWORK_UNREACHABLE", C::kUnavailable, K::kUnreachable},
      {ERROR_HOST_UNREACHABLE, "HOST_UNREACHABLE", C::kUnavailable, K::kUnreachable},
      {ERROR_CONNECTION_ABORTED, "CONNECTION_ABORTED", C::kUnavailable, K::kUnreachable},
      {ERROR_SEM_TIMEOUT, "SEM_TIMEOUT", C::kUnavailable, K::kUnreachable},
      {ERROR_NOT_READY, "NOT_READY", C::kUnavailable, K::kUnreachable},
      {ERROR_IO_DEVICE, "IO_DEVICE", C::kUnavailable, K::kUnreachable},
      {ERROR_INVALID_NAME, "INVALID_NAME", C::kInvalidArgument, K::kOther},
      {ERROR_BAD_PATHNAME, "BAD_PATHNAME", C::kInvalidArgument, K::kOther},
      {ERROR_FILENAME_EXCED_RANGE, "FILENAME_EXCED_RANGE", C::kInvalidArgument, K::kOther},
      {ERROR_INVALID_PARAMETER, "INVALID_PARAMETER", C::kInvalidArgument, K::kOther},
      {ERROR_NOT_SUPPORTED, "NOT_SUPPORTED", C::kUnimplemented, K::kNotSupported},
      {ERROR_INVALID_FUNCTION, "INVALID_FUNCTION", C::kUnimplemented, K::kNotSupported},
      {ERROR_CALL_NOT_IMPLEMENTED, "CALL_NOT_IMPLEMENTED", C::kInternal, K::kNotSupported},
      {ERROR_DIR_NOT_EMPTY, "DIR_NOT_EMPTY", C::kInternal, K::kNotEmpty},
      {ERROR_NOT_SAME_DEVICE, "NOT_SAME_DEVICE", C::kInternal, K::kCrossDevice},
      {ERROR_CANT_RESOLVE_FILENAME, "CANT_RESOLVE_FILENAME", C::kInternal, K::kIsLink},
      {ERROR_STOPPED_ON_SYMLINK, "STOPPED_ON_SYMLINK", C::kInternal, K::kIsLink},
      {ERROR_INVALID_HANDLE, "INVALID_HANDLE", C::kInternal, K::kOther},
  };
  for (const Mapping& m : mappings) {
    const absl::Status s = Win32ErrorToStatus(m.err, "x");
    EXPECT_EQ(s.code(), m.code) << m.name << ": " << s;
    EXPECT_EQ(KindOf(s), m.kind) << m.name << ": " << s;
  }
}

TEST(Win32ErrorToStatus, MessageNamesWhatAndTheSystemText) {
  const absl::Status s = Win32ErrorToStatus(ERROR_FILE_NOT_FOUND, "open C:\\a\\b");
  const std::string text = SystemErrorText(s);
  EXPECT_FALSE(text.empty());
  EXPECT_NE(text.back(), '\n');
  EXPECT_NE(text.back(), '.');
  EXPECT_EQ(s.message(), "open C:\\a\\b: " + text);
  const absl::Status r = WithContext(s, "job folder C:\\a");
  EXPECT_EQ(r.message(), "job folder C:\\a: " + text);
  EXPECT_TRUE(absl::IsNotFound(r));
}

TEST(Win32ErrorToStatus, LastErrorReadsGetLastError) {
  ::SetLastError(ERROR_SHARING_VIOLATION);
  const absl::Status s = internal::LastError("open", "C:\\x");
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(KindOf(s), ErrorKind::kSharingViolation);
  EXPECT_EQ(s.message().substr(0, 11), "open C:\\x: ");
}

}  // namespace
}  // namespace ds::platform
