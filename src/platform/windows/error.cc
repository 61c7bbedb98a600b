// GetLastError codes → absl::Status (the Win32 twin of errno_status.cc; contract in internal.h).
#include "platform/error.h"

#include <string>

#include "platform/windows/internal.h"

namespace ds::platform::internal {
namespace {

// Each code as its errno twin maps (errno_status.cc): the canonical code and the ErrorKind the
// callers test. A code not listed is Internal with kind kOther.
struct Win32Mapping {
  DWORD err;
  absl::StatusCode code;
  ErrorKind kind;
};
using C = absl::StatusCode;
using K = ErrorKind;
constexpr Win32Mapping kMappings[] = {
    {ERROR_FILE_NOT_FOUND, C::kNotFound, K::kOther},
    {ERROR_PATH_NOT_FOUND, C::kNotFound, K::kOther},
    {ERROR_INVALID_DRIVE, C::kNotFound, K::kOther},
    {ERROR_DIRECTORY, C::kNotFound, K::kNotDirectory},
    {ERROR_ACCESS_DENIED, C::kPermissionDenied, K::kOther},
    {ERROR_WRITE_PROTECT, C::kPermissionDenied, K::kOther},
    {ERROR_PRIVILEGE_NOT_HELD, C::kPermissionDenied, K::kOther},
    {ERROR_ALREADY_EXISTS, C::kAlreadyExists, K::kOther},
    {ERROR_FILE_EXISTS, C::kAlreadyExists, K::kOther},
    {ERROR_DISK_FULL, C::kResourceExhausted, K::kOther},
    {ERROR_HANDLE_DISK_FULL, C::kResourceExhausted, K::kOther},
    {ERROR_DISK_QUOTA_EXCEEDED, C::kResourceExhausted, K::kOther},
    {ERROR_TOO_MANY_OPEN_FILES, C::kResourceExhausted, K::kOther},
    {ERROR_NOT_ENOUGH_MEMORY, C::kResourceExhausted, K::kOther},
    {ERROR_OUTOFMEMORY, C::kResourceExhausted, K::kOther},
    {ERROR_NOT_ENOUGH_QUOTA, C::kResourceExhausted, K::kOther},
    {ERROR_SHARING_VIOLATION, C::kUnavailable, K::kSharingViolation},
    {ERROR_LOCK_VIOLATION, C::kUnavailable, K::kBusy},
    {ERROR_BUSY, C::kUnavailable, K::kBusy},
    {ERROR_PIPE_BUSY, C::kUnavailable, K::kBusy},
    {ERROR_DELETE_PENDING, C::kUnavailable, K::kBusy},
    {ERROR_USER_MAPPED_FILE, C::kUnavailable, K::kBusy},
    {ERROR_OPERATION_ABORTED, C::kUnavailable, K::kOther},
    {ERROR_BAD_NETPATH, C::kUnavailable, K::kUnreachable},
    {ERROR_NETNAME_DELETED, C::kUnavailable, K::kUnreachable},
    {ERROR_UNEXP_NET_ERR, C::kUnavailable, K::kUnreachable},
    {ERROR_BAD_NET_NAME, C::kUnavailable, K::kUnreachable},
    {ERROR_NETWORK_BUSY, C::kUnavailable, K::kUnreachable},
    {ERROR_DEV_NOT_EXIST, C::kUnavailable, K::kUnreachable},
    {ERROR_REM_NOT_LIST, C::kUnavailable, K::kUnreachable},
    {ERROR_NETWORK_UNREACHABLE, C::kUnavailable, K::kUnreachable},
    {ERROR_HOST_UNREACHABLE, C::kUnavailable, K::kUnreachable},
    {ERROR_CONNECTION_ABORTED, C::kUnavailable, K::kUnreachable},
    {ERROR_SEM_TIMEOUT, C::kUnavailable, K::kUnreachable},
    {ERROR_NOT_READY, C::kUnavailable, K::kUnreachable},
    {ERROR_IO_DEVICE, C::kUnavailable, K::kUnreachable},
    {ERROR_INVALID_NAME, C::kInvalidArgument, K::kOther},
    {ERROR_BAD_PATHNAME, C::kInvalidArgument, K::kOther},
    {ERROR_FILENAME_EXCED_RANGE, C::kInvalidArgument, K::kOther},
    {ERROR_INVALID_PARAMETER, C::kInvalidArgument, K::kOther},
    {ERROR_NOT_SUPPORTED, C::kUnimplemented, K::kNotSupported},
    {ERROR_INVALID_FUNCTION, C::kUnimplemented, K::kNotSupported},
    {ERROR_CALL_NOT_IMPLEMENTED, C::kInternal, K::kNotSupported},
    {ERROR_DIR_NOT_EMPTY, C::kInternal, K::kNotEmpty},
    {ERROR_NOT_SAME_DEVICE, C::kInternal, K::kCrossDevice},
    {ERROR_CANT_RESOLVE_FILENAME, C::kInternal, K::kIsLink},
    {ERROR_STOPPED_ON_SYMLINK, C::kInternal, K::kIsLink},
};

Win32Mapping MappingOf(DWORD err) {
  for (const Win32Mapping& m : kMappings) {
    if (m.err == err) return m;
  }
  return {err, C::kInternal, K::kOther};
}

// FormatMessageW's text for `err` in UTF-8, without the trailing ".\r\n"; "Windows error N" when
// the system has none.
std::string Win32Text(DWORD err) {
  wchar_t* buffer = nullptr;
  const DWORD n = ::FormatMessageW(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
      nullptr, err, MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), reinterpret_cast<wchar_t*>(&buffer),
      0, nullptr);
  std::wstring text;
  if (n > 0 && buffer != nullptr) text.assign(buffer, n);
  if (buffer != nullptr) ::LocalFree(buffer);
  while (!text.empty() && (text.back() == L'\r' || text.back() == L'\n' || text.back() == L' ' ||
                           text.back() == L'.')) {
    text.pop_back();
  }
  if (text.empty()) return absl::StrCat("Windows error ", err);
  return Narrow(text);
}

}  // namespace

absl::Status Win32ErrorToStatus(DWORD err, std::string_view what) {
  const std::string text = Win32Text(err);
  const std::string msg = absl::StrCat(Av(what), ": ", text);
  const Win32Mapping m = MappingOf(err);
  return WithSystemText(WithKind(absl::Status(m.code, msg), m.kind), text);
}

}  // namespace ds::platform::internal
