// SQLite-specific index tests: the migration runner, connection settings and OpenStateIndex URLs.
// Behaviour every dialect shares belongs in index_conformance_test.cc instead.
#include "index/migrations.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "index/state_index.h"
#include "index/testing/index_testing.h"

namespace ds {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SqliteIndexTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestTempDir("migrations_test");
    ASSERT_FALSE(dir_.empty());
    db_path_ = (dir_ / "index.sqlite").string();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<StateIndex> Open() {
    auto index = OpenStateIndex("sqlite:" + db_path_);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? std::move(*index) : nullptr;
  }

  // (version, applied_at) of every recorded migration, by version.
  std::vector<std::pair<int, int64_t>> Recorded() {
    SQLite::Database db(db_path_, SQLite::OPEN_READONLY);
    SQLite::Statement q(db, "SELECT version, applied_at FROM schema_migrations ORDER BY version");
    std::vector<std::pair<int, int64_t>> rows;
    while (q.executeStep()) rows.emplace_back(q.getColumn(0).getInt(), q.getColumn(1).getInt64());
    return rows;
  }

  std::filesystem::path dir_;
  std::string db_path_;
};

// Versions rise from 1; a branch may lack numbers reserved for another (they merge later).
TEST(SqliteMigrations, VersionsRiseFromOne) {
  ASSERT_FALSE(kSqliteMigrations.empty());
  EXPECT_EQ(kSqliteMigrations[0].version, 1);
  for (size_t i = 0; i < kSqliteMigrations.size(); ++i) {
    if (i > 0) EXPECT_GT(kSqliteMigrations[i].version, kSqliteMigrations[i - 1].version) << kSqliteMigrations[i].name;
    EXPECT_FALSE(kSqliteMigrations[i].sql.empty());
  }
}

TEST_F(SqliteIndexTest, FreshDatabaseGetsEveryVersion) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  auto before = index->SchemaVersion();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, 0);

  ASSERT_TRUE(index->Migrate().ok());
  auto after = index->SchemaVersion();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, kSqliteMigrations.back().version);
  EXPECT_EQ(index->LatestKnownSchemaVersion(), kSqliteMigrations.back().version);

  SQLite::Database db(db_path_, SQLite::OPEN_READONLY);
  SQLite::Statement q(db, "SELECT version, name FROM schema_migrations ORDER BY version");
  for (const Migration& m : kSqliteMigrations) {
    ASSERT_TRUE(q.executeStep()) << "missing version " << m.version;
    EXPECT_EQ(q.getColumn(0).getInt(), m.version);
    EXPECT_EQ(q.getColumn(1).getString(), std::string(m.name));
  }
  EXPECT_FALSE(q.executeStep());
  // Exactly the schema's tables (one list for both backends).
  std::vector<std::string> tables;
  SQLite::Statement t(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                          "'sqlite_%' AND name <> 'schema_migrations' ORDER BY name");
  while (t.executeStep()) tables.push_back(t.getColumn(0).getString());
  EXPECT_EQ(tables, ExpectedIndexTables());
}

TEST_F(SqliteIndexTest, MigrateTwiceIsNoOp) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  const auto first = Recorded();
  ASSERT_EQ(first.size(), kSqliteMigrations.size());

  ASSERT_TRUE(index->Migrate().ok());
  EXPECT_EQ(Recorded(), first);

  index.reset();
  std::unique_ptr<StateIndex> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  ASSERT_TRUE(reopened->Migrate().ok());
  EXPECT_EQ(Recorded(), first);
}

TEST_F(SqliteIndexTest, RefusesNewerSchema) {
  {
    std::unique_ptr<StateIndex> index = Open();
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->Migrate().ok());
  }
  {
    SQLite::Database db(db_path_, SQLite::OPEN_READWRITE);
    db.exec(
        "INSERT INTO schema_migrations (version, name, applied_at) "
        "VALUES (999, '0999_future.sql', 0)");
  }
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  const absl::Status status = index->Migrate();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("999"));
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("(", index->LatestKnownSchemaVersion(), ")")));
  auto version = index->SchemaVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 999);
}

TEST_F(SqliteIndexTest, UsesWriteAheadLog) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  SQLite::Database db(db_path_, SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
}

TEST_F(SqliteIndexTest, FindAdminTokenSkipsRevoked) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  ASSERT_TRUE(index->CreateAdminToken("old", "admin", "hash-old", 1).ok());
  {
    SQLite::Database db(db_path_, SQLite::OPEN_READWRITE);
    db.exec("UPDATE admin_tokens SET revoked_at = 2 WHERE token_hash = 'hash-old'");
  }
  EXPECT_TRUE(absl::IsNotFound(index->FindAdminToken("hash-old").status()));
  auto count = index->CountAdminTokens();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
}

TEST_F(SqliteIndexTest, OpenCreatesParentDirectories) {
  const std::filesystem::path nested = dir_ / "a" / "b" / "index.sqlite";
  auto index = OpenStateIndex("sqlite:" + nested.string());
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_TRUE((*index)->Migrate().ok());
  EXPECT_TRUE(std::filesystem::exists(nested));
}

TEST_F(SqliteIndexTest, UnopenablePathIsUnavailable) {
  // The temp dir itself is a directory, not a database file.
  auto index = OpenStateIndex("sqlite:" + dir_.string());
  EXPECT_TRUE(absl::IsUnavailable(index.status())) << index.status();
}

TEST_F(SqliteIndexTest, OnlineBackupIsAConsistentOpenableCopy) {
  auto index = Open();
  ASSERT_TRUE(index->Migrate().ok());
  ASSERT_TRUE(index->CreateAdminToken("t", "admin", "hash-1", 1).ok());
  std::string backup = (dir_ / "backup.sqlite").string();
  ASSERT_TRUE(index->BackupTo(backup).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(index->BackupTo(backup)));  // never overwrites
  EXPECT_FALSE(std::filesystem::exists(backup + ".partial"));
  auto copy = OpenStateIndex("sqlite:" + backup);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto v = (*copy)->SchemaVersion();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, (*copy)->LatestKnownSchemaVersion());
  EXPECT_TRUE((*copy)->FindAdminToken("hash-1").ok());
}

// The mode bits of `path` that group and others hold (0 when only the owner may use it).
mode_t OthersBits(const std::filesystem::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 077;
}

TEST_F(SqliteIndexTest, IndexFilesAreTheOwnersOnlyWhateverTheUmask) {
  const mode_t old_umask = ::umask(0);
  const std::filesystem::path nested = dir_ / "outside-data-dir" / "state.db";
  auto index = OpenStateIndex("sqlite:" + nested.string());
  ::umask(old_umask);
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_TRUE((*index)->Migrate().ok());
  ASSERT_TRUE((*index)->CreateAdminToken("t", "admin", "hash-1", 1).ok());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::filesystem::path file = nested.string() + suffix;
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    EXPECT_EQ(OthersBits(file), 0) << file;
  }
  EXPECT_EQ(OthersBits(nested.parent_path()), 0);
  const std::string backup = (dir_ / "backup.db").string();
  ASSERT_TRUE((*index)->BackupTo(backup).ok());
  EXPECT_EQ(OthersBits(backup), 0);
}

TEST_F(SqliteIndexTest, OpeningTakesOthersOffAWorldReadableIndex) {
  {
    auto index = Open();
    ASSERT_TRUE(index->Migrate().ok());
    ASSERT_TRUE(index->CreateAdminToken("t", "admin", "hash-1", 1).ok());
    for (const char* suffix : {"", "-wal", "-shm"}) {
      ::chmod((db_path_ + suffix).c_str(), 0644);
    }
  }
  auto index = Open();
  ASSERT_TRUE(index->CreateAdminToken("u", "admin", "hash-2", 2).ok());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = db_path_ + suffix;
    if (std::filesystem::exists(file)) EXPECT_EQ(OthersBits(file), 0) << file;
  }
}

TEST(OpenStateIndex, RejectsUnknownSchemesWithoutEchoingTheUrl) {
  auto mysql = OpenStateIndex("mysql://user:s3cret@db.example/datasync");
  EXPECT_TRUE(absl::IsInvalidArgument(mysql.status())) << mysql.status();
  EXPECT_THAT(mysql.status().message(), HasSubstr("mysql"));
  EXPECT_THAT(mysql.status().message(), Not(HasSubstr("s3cret")));
  EXPECT_TRUE(absl::IsInvalidArgument(OpenStateIndex("/var/lib/datasync.db").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(OpenStateIndex("sqlite:").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(OpenStateIndex("").status()));
}

}  // namespace
}  // namespace ds
