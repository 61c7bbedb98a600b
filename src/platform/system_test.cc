#include "platform/system.h"

#include <pthread.h>
#include <pty.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "platform/directory.h"
#include "platform/path.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

TEST(FreeSpace, ReportsTheVolume) {
  TestDir t;
  auto s = FreeSpace(t.path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->total, 0u);
  EXPECT_LE(s->available, s->total);
  EXPECT_GT(s->max_name_length, 0u);
  EXPECT_TRUE(absl::IsNotFound(FreeSpace(t.path() / "none").status()));
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d.ok());
  auto by_dir = d->Space();
  ASSERT_TRUE(by_dir.ok());
  EXPECT_EQ(by_dir->total, s->total);
  EXPECT_EQ(by_dir->max_name_length, s->max_name_length);
}

TEST(HostInfo, DescribesThisMachine) {
  HostInfo h = GetHostInfo();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(h.hostname, host);
  EXPECT_EQ(h.os_name, "Linux");
  EXPECT_FALSE(h.os_version.empty());
  EXPECT_FALSE(h.arch.empty());
}

TEST(SetCurrentThreadName, NamesThisThreadUpTo15Bytes) {
  std::thread([] {
    SetCurrentThreadName("a-very-long-thread-name");
    char name[32] = {};
    ASSERT_EQ(pthread_getname_np(pthread_self(), name, sizeof name), 0);
    EXPECT_STREQ(name, "a-very-long-thr");
  }).join();
}

TEST(IsTerminal, AgreesWithIsatty) {
  EXPECT_EQ(IsTerminal(StdStream::kIn), ::isatty(0) != 0);
  EXPECT_EQ(IsTerminal(StdStream::kOut), ::isatty(1) != 0);
  EXPECT_EQ(IsTerminal(StdStream::kErr), ::isatty(2) != 0);
}

TEST(HiddenInput, TurnsEchoOffOnATerminalAndBack) {
  int controller = -1, terminal = -1;
  ASSERT_EQ(::openpty(&controller, &terminal, nullptr, nullptr, nullptr), 0);
  const int saved_stdin = ::dup(STDIN_FILENO);
  ASSERT_GE(saved_stdin, 0);
  ASSERT_EQ(::dup2(terminal, STDIN_FILENO), STDIN_FILENO);
  auto echo = [] {
    termios mode{};
    EXPECT_EQ(::tcgetattr(STDIN_FILENO, &mode), 0);
    return (mode.c_lflag & ECHO) != 0;
  };
  const bool before = echo();
  {
    HiddenInput hidden;
    EXPECT_FALSE(echo());
  }
  const bool after = echo();
  ::dup2(saved_stdin, STDIN_FILENO);
  ::close(saved_stdin);
  ::close(terminal);
  ::close(controller);
  EXPECT_TRUE(before);
  EXPECT_TRUE(after);
}

TEST(HiddenInput, LeavesAPipeAlone) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int saved_stdin = ::dup(STDIN_FILENO);
  ::dup2(fds[0], STDIN_FILENO);
  { HiddenInput hidden; }  // nothing to change, nothing to fail
  ::dup2(saved_stdin, STDIN_FILENO);
  for (int fd : {saved_stdin, fds[0], fds[1]}) ::close(fd);
}

TEST(RaiseOpenFileLimit, RaisesTheSoftLimitUpToTheCap) {
  struct rlimit before {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  RaiseOpenFileLimit(1 << 20);
  struct rlimit after {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, std::min<rlim_t>(before.rlim_max, 1 << 20));
}

TEST(MachineSecret, IsStableAndNonEmpty) {
  const std::string a = MachineSecret();
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, MachineSecret());
}

TEST(Paths, Utf8RoundTrips) {
  const std::string name = "Messdaten/Grüße/日本.csv";
  EXPECT_EQ(PathToUtf8(PathFromUtf8(name)), name);
  EXPECT_EQ(PathFromUtf8(name) / "x", std::filesystem::path(name + "/x"));
}

TEST(Paths, RealPathResolvesLinks) {
  TestDir t;
  std::filesystem::create_directory(t.path() / "real");
  std::filesystem::create_directory_symlink("real", t.path() / "link");
  auto real = RealPath(t.path() / "link" / ".." / "link");
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(*real, std::filesystem::canonical(t.path() / "real"));
  EXPECT_TRUE(absl::IsNotFound(RealPath(t.path() / "none").status()));
}

}  // namespace
}  // namespace ds::platform
