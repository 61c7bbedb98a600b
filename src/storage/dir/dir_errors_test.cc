#include "storage/dir/dir_errors.h"

#include <cerrno>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "platform/dir_extra.h"
#include "platform/error.h"

namespace ds {
namespace {

TEST(DirErrors, AnUnreachableShareIsUnavailableAndOtherErrorsKeepTheirCode) {
  const absl::Status stale = StorageError(platform::ErrnoToStatus(ESTALE, "stat /share/a"));
  EXPECT_TRUE(absl::IsUnavailable(stale)) << stale;
  EXPECT_NE(stale.message().find("stat /share/a"), std::string_view::npos);
  const absl::Status refused = StorageError(platform::ErrnoToStatus(ENODEV, "open /share/a"));
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_EQ(platform::KindOf(refused), platform::ErrorKind::kNoDevice);  // payload kept
  EXPECT_TRUE(absl::IsNotFound(StorageError(platform::ErrnoToStatus(ENOENT, "stat /share/a"))));
  EXPECT_TRUE(absl::IsPermissionDenied(StorageError(platform::ErrnoToStatus(EACCES, "x"))));
  EXPECT_TRUE(StorageError(absl::OkStatus()).ok());
}

TEST(DirErrors, AnUnreachableShareIsFoundThroughAddedContext) {
  const absl::Status st = StorageError(
      platform::WithContext(platform::ErrnoToStatus(ENOTCONN, "open /share/a"), "put a"));
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "put a: ")) << st;
}

TEST(DirErrors, BusyIsRetriedAndOtherErrorsAreNot) {
  int calls = 0;
  absl::Status st = RetryWhileBusy([&] {
    return ++calls < 3 ? platform::ErrnoToStatus(EBUSY, "remove /share/a") : absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(calls, 3);
  calls = 0;
  st = RetryWhileBusy([&] {
    ++calls;
    return platform::ErrnoToStatus(EIO, "remove /share/a");
  });
  EXPECT_TRUE(absl::IsUnavailable(st));
  EXPECT_EQ(calls, 1);
  calls = 0;
  st = RetryWhileBusy([&] {
    ++calls;
    return platform::ErrnoToStatus(EBUSY, "remove /share/a");
  });
  EXPECT_EQ(calls, 8);  // gives up after about 2.5 s
  EXPECT_TRUE(platform::IsBusy(st));
}

}  // namespace
}  // namespace ds
