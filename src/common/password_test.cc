#include "common/password.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

// Cheap parameters: the tests check behaviour, not cost.
constexpr PasswordCost kFast{1024, 1, 1};

TEST(PasswordTest, HashIsArgon2idEncodedAndSalted) {
  auto a = HashPassword("correct horse", kFast);
  auto b = HashPassword("correct horse", kFast);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->rfind("$argon2id$v=19$m=1024,t=1,p=1$", 0), 0u) << *a;
  EXPECT_NE(*a, *b);  // fresh salt each time
  EXPECT_EQ(a->find("correct"), std::string::npos);
}

TEST(PasswordTest, VerifyAcceptsOnlyTheRightPassword) {
  auto h = HashPassword("correct horse", kFast);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(VerifyPassword("correct horse", *h));
  EXPECT_FALSE(VerifyPassword("correct hors", *h));
  EXPECT_FALSE(VerifyPassword("Correct horse", *h));
  EXPECT_FALSE(VerifyPassword("", *h));
  EXPECT_FALSE(VerifyPassword("correct horse", "not a hash"));
  EXPECT_FALSE(VerifyPassword("correct horse", ""));
  std::string tampered = *h;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyPassword("correct horse", tampered));
}

TEST(PasswordTest, DefaultCostIsReadFromTheEncodedString) {
  auto h = HashPassword("p4ssw0rd-default");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << *h;
  EXPECT_TRUE(VerifyPassword("p4ssw0rd-default", *h));
}

TEST(PasswordTest, Policy) {
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPasswordPolicy("short")));
  EXPECT_TRUE(CheckPasswordPolicy("long enough").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPasswordPolicy(std::string(2000, 'x'))));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPasswordPolicy(std::string("abc\0defgh", 9))));
}

}  // namespace
}  // namespace ds
