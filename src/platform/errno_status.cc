// errno → absl::Status: portable (the Windows CRT sets errno for a few calls too); the errno
// values Windows lacks (EDQUOT, ESTALE, EHOSTDOWN) are left out there. The Win32 twin for
// GetLastError codes is windows/error.cc.
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "platform/error.h"

namespace ds::platform {
namespace {

ErrorKind KindOfErrno(int err) {
  switch (err) {
    case ELOOP:
      return ErrorKind::kIsLink;
    case ENOTDIR:
      return ErrorKind::kNotDirectory;
    case EISDIR:
      return ErrorKind::kIsDirectory;
    case ENOTEMPTY:
      return ErrorKind::kNotEmpty;
    case EXDEV:
      return ErrorKind::kCrossDevice;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
      return ErrorKind::kNotSupported;
    case ENOSYS:  // a FUSE filesystem that lacks the call
      return ErrorKind::kNotSupported;
    case EBUSY:
    case ETXTBSY:
      return ErrorKind::kBusy;
#ifdef ESTALE
    case ESTALE:
#endif
    case EIO:
    case ENOTCONN:
    case ETIMEDOUT:
#ifdef EHOSTDOWN
    case EHOSTDOWN:
#endif
    case EHOSTUNREACH:
    case ENETDOWN:
    case ENETUNREACH:
    case ECONNRESET:
    case ECONNABORTED:
      return ErrorKind::kUnreachable;
    case ENXIO:
    case ENODEV:
      return ErrorKind::kNoDevice;
    default:
      return ErrorKind::kOther;
  }
}

absl::Status CodeOfErrno(int err, const std::string& msg) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(msg);
    case EBUSY:
    case EAGAIN:
    case ETXTBSY:
    case EINTR:
    case EIO:
      return absl::UnavailableError(msg);
    case ENAMETOOLONG:
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

absl::Status ErrnoToStatus(int err, std::string_view what) {
  const std::string msg =
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", std::strerror(err));
  return WithSystemText(WithKind(CodeOfErrno(err, msg), KindOfErrno(err)), std::strerror(err));
}

}  // namespace ds::platform
