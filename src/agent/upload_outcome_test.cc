#include "agent/upload_outcome.h"

#include <gtest/gtest.h>

#include "storage/storage.h"

namespace ds {
namespace {

protocol::FileResult Planned() {
  protocol::FileResult r;
  r.path = "odd/CON";
  r.mtime_ns = 123;
  return r;
}

TEST(SetPutErrorTest, ANameRefusalSkipsTheFileWithTheRefusalAsItsReason) {
  for (const absl::Status& refusal :
       {NameRefusal(absl::InvalidArgumentError("name 'odd/CON' cannot be stored here: reserved")),
        NameRefusal(absl::AlreadyExistsError("name 'case.txt' collides by case with the stored 'Case.txt'"))}) {
    protocol::FileResult r = Planned();
    SetPutError(refusal, &r);
    EXPECT_EQ(r.status, "skipped") << refusal;
    EXPECT_EQ(r.error, refusal.message());
    EXPECT_EQ(r.mtime_ns, 123);
  }
}

TEST(SetPutErrorTest, AnyOtherErrorFailsTheFile) {
  for (const absl::Status& st : {absl::InvalidArgumentError("bad key"), absl::AlreadyExistsError("no free temp name"),
                                 absl::UnavailableError("share gone"), absl::InternalError("EIO")}) {
    protocol::FileResult r = Planned();
    SetPutError(st, &r);
    EXPECT_EQ(r.status, "failed") << st;
    EXPECT_EQ(r.error, st.message());
    EXPECT_EQ(r.mtime_ns, 0);
  }
}

TEST(ClassifyCopyDeclineTest, ANameRefusalDeclinesOnlyThatFile) {
  EXPECT_EQ(ClassifyCopyDecline(NameRefusal(absl::InvalidArgumentError("'a*b.txt' cannot be stored here"))),
            CopyDecline::kThisFile);
  EXPECT_EQ(ClassifyCopyDecline(NameRefusal(absl::AlreadyExistsError("collides by case"))), CopyDecline::kThisFile);
  EXPECT_EQ(ClassifyCopyDecline(absl::AbortedError("source changed")), CopyDecline::kThisFile);
  EXPECT_EQ(ClassifyCopyDecline(absl::ResourceExhaustedError("no unnamed file")), CopyDecline::kThisFile);
  EXPECT_EQ(ClassifyCopyDecline(absl::AlreadyExistsError("exists: not staged unnamed")), CopyDecline::kThisFile);
  EXPECT_EQ(ClassifyCopyDecline(absl::CancelledError("stopping")), CopyDecline::kThisFile);
}

TEST(ClassifyCopyDeclineTest, StorageTroubleStopsTheCopying) {
  EXPECT_EQ(ClassifyCopyDecline(absl::FailedPreconditionError("cannot stage unnamed files")),
            CopyDecline::kStopCopying);
  EXPECT_EQ(ClassifyCopyDecline(absl::InvalidArgumentError("bad key")), CopyDecline::kStopCopying);
  EXPECT_EQ(ClassifyCopyDecline(absl::UnavailableError("share gone")), CopyDecline::kStopCopying);
}

}  // namespace
}  // namespace ds
