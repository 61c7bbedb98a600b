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

TEST(DirErrors, ContextComesFirstAndKeepsCodeAndKind) {
  const absl::Status st =
      WithContext(platform::ErrnoToStatus(ELOOP, "open /r/a"), "write metadata record /r/a");
  EXPECT_EQ(st.code(), platform::ErrnoToStatus(ELOOP, "").code());
  EXPECT_EQ(platform::KindOf(st), platform::ErrorKind::kIsLink);
  EXPECT_TRUE(absl::StartsWith(st.message(), "write metadata record /r/a: open /r/a: ")) << st;
  EXPECT_TRUE(WithContext(absl::OkStatus(), "nothing").ok());
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
