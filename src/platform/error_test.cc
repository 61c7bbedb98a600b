#include "platform/error.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace ds::platform {
namespace {

TEST(ErrnoToStatus, MapsToCanonicalCodes) {
  EXPECT_TRUE(absl::IsNotFound(ErrnoToStatus(ENOENT, "x")));
  EXPECT_TRUE(absl::IsNotFound(ErrnoToStatus(ENOTDIR, "x")));
  EXPECT_TRUE(absl::IsAlreadyExists(ErrnoToStatus(EEXIST, "x")));
  EXPECT_TRUE(absl::IsPermissionDenied(ErrnoToStatus(EACCES, "x")));
  EXPECT_TRUE(absl::IsPermissionDenied(ErrnoToStatus(EPERM, "x")));
  EXPECT_TRUE(absl::IsPermissionDenied(ErrnoToStatus(EROFS, "x")));
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoToStatus(ENOSPC, "x")));
#ifdef EDQUOT
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoToStatus(EDQUOT, "x")));
#endif
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoToStatus(EMFILE, "x")));
  EXPECT_TRUE(absl::IsUnavailable(ErrnoToStatus(EINTR, "x")));
  EXPECT_TRUE(absl::IsUnavailable(ErrnoToStatus(EAGAIN, "x")));
  EXPECT_TRUE(absl::IsUnavailable(ErrnoToStatus(EIO, "x")));
  EXPECT_TRUE(absl::IsUnavailable(ErrnoToStatus(EBUSY, "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(ErrnoToStatus(EINVAL, "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(ErrnoToStatus(ENAMETOOLONG, "x")));
  EXPECT_TRUE(absl::IsUnimplemented(ErrnoToStatus(ENOTSUP, "x")));
  EXPECT_TRUE(absl::IsUnimplemented(ErrnoToStatus(EOPNOTSUPP, "x")));
  EXPECT_TRUE(absl::IsInternal(ErrnoToStatus(EFAULT, "x")));
}

TEST(ErrnoToStatus, MessageNamesWhatAndTheSystemText) {
  EXPECT_EQ(ErrnoToStatus(ENOENT, "open /a/b").message(), "open /a/b: No such file or directory");
}

TEST(ErrnoToStatus, AttachesKinds) {
  EXPECT_EQ(KindOf(ErrnoToStatus(ELOOP, "x")), ErrorKind::kIsLink);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENOTDIR, "x")), ErrorKind::kNotDirectory);
  EXPECT_EQ(KindOf(ErrnoToStatus(EISDIR, "x")), ErrorKind::kIsDirectory);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENOTEMPTY, "x")), ErrorKind::kNotEmpty);
  EXPECT_EQ(KindOf(ErrnoToStatus(EXDEV, "x")), ErrorKind::kCrossDevice);
  EXPECT_EQ(KindOf(ErrnoToStatus(EBUSY, "x")), ErrorKind::kBusy);
#ifdef ESTALE
  EXPECT_EQ(KindOf(ErrnoToStatus(ESTALE, "x")), ErrorKind::kUnreachable);
#endif
  EXPECT_EQ(KindOf(ErrnoToStatus(EIO, "x")), ErrorKind::kUnreachable);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENOSYS, "x")), ErrorKind::kNotSupported);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENOTSUP, "x")), ErrorKind::kNotSupported);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENXIO, "x")), ErrorKind::kNoDevice);
  EXPECT_EQ(KindOf(ErrnoToStatus(ENOENT, "x")), ErrorKind::kOther);
}

TEST(SystemErrorText, IsTheOsTextAndWithContextRelabels) {
  const absl::Status s = ErrnoToStatus(EACCES, "open /x");
  EXPECT_EQ(SystemErrorText(s), "Permission denied");
  EXPECT_EQ(SystemErrorText(absl::InternalError("plain")), "plain");
  const absl::Status r = WithContext(ErrnoToStatus(ELOOP, "open /x"), "job folder /x");
#ifdef _WIN32
  // The Windows CRT's strerror has no text of its own for the POSIX additions such as ELOOP.
  EXPECT_EQ(r.message(), "job folder /x: " + std::string(std::strerror(ELOOP)));
#else
  EXPECT_EQ(r.message(), "job folder /x: Too many levels of symbolic links");
#endif
  EXPECT_EQ(r.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(KindOf(r), ErrorKind::kIsLink);
  EXPECT_TRUE(WithContext(absl::OkStatus(), "x").ok());
}

TEST(KindOf, OkAndForeignStatusesHaveNoKind) {
  EXPECT_EQ(KindOf(absl::OkStatus()), ErrorKind::kOther);
  EXPECT_EQ(KindOf(absl::InternalError("x")), ErrorKind::kOther);
  EXPECT_EQ(KindOf(WithKind(absl::OkStatus(), ErrorKind::kIsLink)), ErrorKind::kOther);
  EXPECT_EQ(KindOf(WithKind(absl::AbortedError("x"), ErrorKind::kSharingViolation)),
            ErrorKind::kSharingViolation);
}

}  // namespace
}  // namespace ds::platform
