#include "platform/net.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace ds::platform {
namespace {

TEST(OpenSocketNoInherit, OpensASocketChildrenDoNotInherit) {
  auto s = OpenSocketNoInherit(AF_INET, SOCK_STREAM, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NE(::fcntl(*s, F_GETFD) & FD_CLOEXEC, 0);
  ::close(*s);
}

TEST(OpenSocketNoInherit, AnUnknownFamilyIsAnError) {
  auto s = OpenSocketNoInherit(-1, SOCK_STREAM, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message().substr(0, 8), "socket: ");
}

TEST(PeerClosed, SeesTheEndOfStreamButNotWaitingData) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  EXPECT_FALSE(PeerClosed(pair[0]));  // nothing arrived: still there
  ASSERT_EQ(::send(pair[1], "x", 1, 0), 1);
  EXPECT_FALSE(PeerClosed(pair[0]));  // data waits (a pipelined request)
  char c = 0;
  ASSERT_EQ(::recv(pair[0], &c, 1, 0), 1);  // the peek consumed nothing
  EXPECT_EQ(c, 'x');
  ::close(pair[1]);
  EXPECT_TRUE(PeerClosed(pair[0]));
  ::close(pair[0]);
}

}  // namespace
}  // namespace ds::platform
