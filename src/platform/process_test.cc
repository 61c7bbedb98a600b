#include "platform/process.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "platform/directory.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

absl::StatusOr<ChildProcess> Shell(const std::string& script, const std::filesystem::path& log) {
  return ChildProcess::Start({"/bin/sh", "-c", script}, log);
}

std::string Contents(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ChildProcess, ReadsLinesToTheEnd) {
  TestDir t;
  auto child = Shell("echo ready; echo 'second line'; printf last", t.path() / "log");
  ASSERT_TRUE(child.ok()) << child.status();
  for (const char* want : {"ready", "second line", "last"}) {
    auto line = child->ReadLine();
    ASSERT_TRUE(line.ok()) << line.status();
    ASSERT_TRUE(line->has_value());
    EXPECT_EQ(**line, want);
  }
  auto end = child->ReadLine();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  auto again = child->ReadLine();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto exit = child->Wait(ChildProcess::kForever);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success());
  EXPECT_FALSE(child->running());
}

TEST(ChildProcess, ReportsTheExitCodeAgainOnceReaped) {
  TestDir t;
  auto child = Shell("exit 3", t.path() / "log");
  ASSERT_TRUE(child.ok());
  auto exit = child->Wait(milliseconds(10'000));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, 3);
  EXPECT_EQ(exit->signal, 0);
  EXPECT_EQ(child->Wait(milliseconds(0))->code, 3);
  EXPECT_TRUE(child->Kill().ok());  // no effect now
  EXPECT_EQ(child->Stop(milliseconds(0))->code, 3);
}

TEST(ChildProcess, WaitTimesOutWhileItRuns) {
  TestDir t;
  auto child = Shell("exec sleep 30", t.path() / "log");
  ASSERT_TRUE(child.ok());
  auto exit = child->Wait(milliseconds(50));
  EXPECT_TRUE(absl::IsDeadlineExceeded(exit.status())) << exit.status();
  EXPECT_TRUE(child->running());
}

TEST(ChildProcess, StopEndsACooperativeProcessWithTerm) {
  TestDir t;
  auto child = Shell("echo up; exec sleep 30", t.path() / "log");
  ASSERT_TRUE(child.ok());
  ASSERT_EQ(**child->ReadLine(), "up");
  const auto t0 = Clock::now();
  auto exit = child->Stop(milliseconds(10'000));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_EQ(exit->code, -1);
  EXPECT_LT(Clock::now() - t0, milliseconds(5'000));
}

TEST(ChildProcess, StopKillsAProcessThatIgnoresTermAfterTheGrace) {
  TestDir t;
  auto child = Shell("trap '' TERM; echo armed; while :; do sleep 0.1; done", t.path() / "log");
  ASSERT_TRUE(child.ok());
  ASSERT_EQ(**child->ReadLine(), "armed");  // the trap is set
  const auto t0 = Clock::now();
  auto exit = child->Stop(milliseconds(300));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_GE(Clock::now() - t0, milliseconds(300));
}

TEST(ChildProcess, StartsWithNoSignalBlocked) {
  // The CLI's StopHandler blocks SIGTERM in every thread; a child must still obey it.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  TestDir t;
  auto child = Shell("echo up; exec sleep 30", t.path() / "log");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(child.ok());
  ASSERT_EQ(**child->ReadLine(), "up");
  auto exit = child->Stop(milliseconds(10'000));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->signal, SIGTERM);
}

TEST(ChildProcess, AppendsStderrToTheLogFile) {
  TestDir t;
  const auto log = t.path() / "child.log";
  std::ofstream(log) << "earlier\n";
  auto child = Shell("echo to-stdout; echo to-stderr >&2", log);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(**child->ReadLine(), "to-stdout");
  ASSERT_TRUE(child->Wait(ChildProcess::kForever).ok());
  EXPECT_EQ(Contents(log), "earlier\nto-stderr\n");

  const auto fresh = t.path() / "fresh.log";
  auto second = Shell("echo x >&2", fresh);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->Wait(ChildProcess::kForever).ok());
  EXPECT_EQ(Contents(fresh), "x\n");
  struct stat st {};
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ChildProcess, AnotherChildDoesNotHoldItsOutputOpen) {
  TestDir t;
  auto first = Shell("echo a; sleep 0.2", t.path() / "log");
  ASSERT_TRUE(first.ok());
  auto second = Shell("exec sleep 30", t.path() / "log");  // started while the first runs
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(**first->ReadLine(), "a");
  const auto t0 = Clock::now();
  EXPECT_FALSE(first->ReadLine()->has_value());  // the end comes when the first exits
  EXPECT_LT(Clock::now() - t0, milliseconds(10'000));
}

TEST(ChildProcess, DestructionKillsARunningChild) {
  TestDir t;
  const auto t0 = Clock::now();
  {
    auto child = Shell("exec sleep 30", t.path() / "log");
    ASSERT_TRUE(child.ok());
    ChildProcess moved = *std::move(child);
    EXPECT_TRUE(moved.running());
  }
  EXPECT_LT(Clock::now() - t0, milliseconds(10'000));
}

TEST(ChildProcess, AMissingExecutableIsAClearError) {
  TestDir t;
  auto child = ChildProcess::Start({"/nonexistent/datasync-server", "--x"}, t.path() / "log");
  ASSERT_FALSE(child.ok());
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_EQ(child.status().message(),
            "start /nonexistent/datasync-server: No such file or directory");

  auto not_executable = ChildProcess::Start({(t.path() / "log").string()}, t.path() / "log");
  EXPECT_TRUE(absl::IsPermissionDenied(not_executable.status())) << not_executable.status();
}

TEST(ChildProcess, RefusesAnEmptyCommandAndAnUnopenableLog) {
  TestDir t;
  EXPECT_TRUE(absl::IsInvalidArgument(ChildProcess::Start({}, t.path() / "log").status()));
  auto child = ChildProcess::Start({"/bin/true"}, t.path() / "missing" / "log");
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_NE(child.status().message().find("open "), absl::string_view::npos);
}

TEST(MakeTempDirectory, MakesAFreshPrivateDirectory) {
  auto a = MakeTempDirectory("platform-test-tmp-");
  auto b = MakeTempDirectory("platform-test-tmp-");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->parent_path(), std::filesystem::temp_directory_path());
  EXPECT_EQ(a->filename().string().rfind("platform-test-tmp-", 0), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(*a));
  struct stat st {};
  ASSERT_EQ(::stat(a->c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::filesystem::remove(*a);
  std::filesystem::remove(*b);
}

TEST(MakeTempDirectory, ReportsAMissingTemporaryDirectory) {
  const char* old = ::getenv("TMPDIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TMPDIR", "/nonexistent-tmp-for-test", 1);
  auto dir = MakeTempDirectory("x-");
  if (old != nullptr) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  EXPECT_FALSE(dir.ok());
}

}  // namespace
}  // namespace ds::platform
