// MigrateIndex: a dialect-aware table copier, SQLite (read with SQLiteCpp) → PostgreSQL (written
// with libpqxx). It knows no table by name: tables, columns, their PostgreSQL types and the
// foreign-key order come from the two catalogs, so a new migration needs no change here unless it
// makes the dialects' columns differ (then add a DerivedColumn). Every exception from SQLiteCpp
// and libpqxx is converted to an absl::Status here and never leaves this file.
#include "index/migrate_index.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "index/migrations.h"
#include "index/postgres/conninfo.h"
#include "index/state_index.h"

namespace ds {
namespace {

// A target column the source dialect does not have, and the SQLite expression that fills it.
struct DerivedColumn {
  const char* table;
  const char* column;
  const char* sqlite_expr;
};
constexpr DerivedColumn kDerivedColumns[] = {
    // PostgreSQL keeps the insertion order of runs in `seq` where SQLite uses the rowid: copying
    // one into the other keeps ties of started_at in the same order.
    {"sync_runs", "seq", "rowid"},
};

// Tables a migration seeds with rows (default alert rules, 0005): a fresh target has them, and
// the copy replaces them with the source's rows (the source has its own seeded, maybe edited, set).
constexpr const char* kSeededTables[] = {"alert_rules"};

bool IsSeeded(const std::string& table) {
  return std::any_of(std::begin(kSeededTables), std::end(kSeededTables),
                     [&](const char* t) { return table == t; });
}

struct Column {
  std::string name;
  std::string pg_type;      // format_type(): bigint, integer, text, boolean, ...
  std::string source_expr;  // SQLite expression (a quoted column name, or a DerivedColumn's)
};

struct Table {
  std::string name;
  std::vector<Column> columns;
};

// `"name"`, for identifiers read from the catalogs.
std::string QuoteIdent(const std::string& name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// Appends one SQLite value as an element of a PostgreSQL array literal of type `pg_type`[].
void AppendArrayElement(std::string* out, const SQLite::Column& value, const std::string& pg_type) {
  if (value.isNull()) {
    *out += "NULL";
    return;
  }
  if (pg_type == "boolean") {
    // SQLite stores booleans as 0/1.
    *out += value.isInteger() ? (value.getInt64() != 0 ? "t" : "f") : value.getString();
    return;
  }
  if (value.isInteger()) {
    *out += std::to_string(value.getInt64());
    return;
  }
  *out += '"';
  for (const char c : value.getString()) {
    if (c == '"' || c == '\\') *out += '\\';
    *out += c;
  }
  *out += '"';
}

// Tables of the target's current schema (without schema_migrations), with their columns.
std::vector<Table> TargetTables(pqxx::transaction_base& tx) {
  std::vector<Table> tables;
  const pqxx::result names = tx.exec(R"sql(
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname <> 'schema_migrations'
    ORDER BY c.relname)sql");
  for (const pqxx::row& row : names) {
    Table t;
    t.name = row[0].c_str();
    const pqxx::result cols = tx.exec_params(R"sql(
      SELECT a.attname, format_type(a.atttypid, a.atttypmod)
      FROM pg_attribute a
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum)sql",
                                             QuoteIdent(t.name));
    for (const pqxx::row& col : cols) t.columns.push_back({col[0].c_str(), col[1].c_str(), ""});
    tables.push_back(std::move(t));
  }
  return tables;
}

// `tables` reordered so that every table comes after the tables its foreign keys point to.
absl::StatusOr<std::vector<Table>> InForeignKeyOrder(pqxx::transaction_base& tx,
                                                     std::vector<Table> tables) {
  std::map<std::string, std::set<std::string>> parents;  // child -> parents
  for (const Table& t : tables) parents[t.name];
  const pqxx::result fks = tx.exec(R"sql(
    SELECT cl.relname, pl.relname
    FROM pg_constraint k
    JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
    JOIN pg_class pl ON pl.oid = k.confrelid
    WHERE k.contype = 'f' AND n.nspname = current_schema())sql");
  for (const pqxx::row& row : fks) {
    const std::string child = row[0].c_str(), parent = row[1].c_str();
    if (child != parent && parents.count(child) && parents.count(parent)) {
      parents[child].insert(parent);
    }
  }
  std::vector<Table> ordered;
  std::set<std::string> placed;
  while (ordered.size() < tables.size()) {
    bool progress = false;
    for (const Table& t : tables) {
      if (placed.count(t.name)) continue;
      const auto& need = parents[t.name];
      if (!std::all_of(need.begin(), need.end(),
                       [&](const std::string& p) { return placed.count(p) > 0; })) {
        continue;
      }
      placed.insert(t.name);
      ordered.push_back(t);
      progress = true;
    }
    if (!progress) {
      return absl::FailedPreconditionError("the target's foreign keys form a cycle");
    }
  }
  return ordered;
}

// Fills each target column's source expression from the SQLite catalog; FailedPrecondition when
// the dialects' tables or columns differ beyond kDerivedColumns.
absl::Status MatchSourceColumns(SQLite::Database& db, std::vector<Table>& tables) {
  std::set<std::string> source_tables;
  {
    SQLite::Statement q(db, R"sql(
      SELECT name FROM sqlite_master
      WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'schema_migrations')sql");
    while (q.executeStep()) source_tables.insert(q.getColumn(0).getString());
  }
  std::set<std::string> target_tables;
  for (const Table& t : tables) target_tables.insert(t.name);
  if (source_tables != target_tables) {
    std::vector<std::string> only_source, only_target;
    std::set_difference(source_tables.begin(), source_tables.end(), target_tables.begin(),
                        target_tables.end(), std::back_inserter(only_source));
    std::set_difference(target_tables.begin(), target_tables.end(), source_tables.begin(),
                        source_tables.end(), std::back_inserter(only_target));
    return absl::FailedPreconditionError(absl::StrCat(
        "source and target tables differ (only in SQLite: ", absl::StrJoin(only_source, ", "),
        "; only in PostgreSQL: ", absl::StrJoin(only_target, ", "), ")"));
  }
  for (Table& t : tables) {
    std::set<std::string> source_columns;
    SQLite::Statement q(db, "SELECT name FROM pragma_table_info(?)");
    q.bind(1, t.name);
    while (q.executeStep()) source_columns.insert(q.getColumn(0).getString());
    for (Column& c : t.columns) {
      if (source_columns.erase(c.name) > 0) {
        c.source_expr = QuoteIdent(c.name);
        continue;
      }
      for (const DerivedColumn& d : kDerivedColumns) {
        if (t.name == d.table && c.name == d.column) c.source_expr = d.sqlite_expr;
      }
      if (c.source_expr.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "column ", t.name, ".", c.name, " exists in PostgreSQL only and has no known source"));
      }
    }
    if (!source_columns.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("columns only in SQLite: ", t.name, ".",
                                                        absl::StrJoin(source_columns, ", ")));
    }
  }
  return absl::OkStatus();
}

// Copies one table in batches; returns the rows copied.
int64_t CopyTable(SQLite::Database& db, pqxx::transaction_base& tx, const Table& t, int64_t total,
                  const MigrateIndexOptions& options) {
  std::vector<std::string> exprs, names, unnest;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    exprs.push_back(t.columns[i].source_expr);
    names.push_back(QuoteIdent(t.columns[i].name));
    unnest.push_back(absl::StrCat("$", i + 1, "::", t.columns[i].pg_type, "[]"));
  }
  const std::string insert =
      absl::StrCat("INSERT INTO ", QuoteIdent(t.name), " (", absl::StrJoin(names, ", "),
                   ") SELECT * FROM unnest(", absl::StrJoin(unnest, ", "), ")");
  SQLite::Statement read(
      db, absl::StrCat("SELECT ", absl::StrJoin(exprs, ", "), " FROM ", QuoteIdent(t.name)));
  const size_t batch_rows = std::max<size_t>(1, options.batch_rows);
  std::vector<std::string> arrays(t.columns.size());
  size_t in_batch = 0;
  int64_t copied = 0;
  const auto flush = [&] {
    if (in_batch == 0) return;
    for (std::string& a : arrays) a += '}';
    tx.exec_params(insert, pqxx::prepare::make_dynamic_params(arrays));
    copied += static_cast<int64_t>(in_batch);
    in_batch = 0;
    if (options.progress) options.progress(t.name, copied, total);
  };
  while (read.executeStep()) {
    if (in_batch == 0) {
      for (std::string& a : arrays) a = "{";
    }
    for (size_t i = 0; i < t.columns.size(); ++i) {
      if (in_batch > 0) arrays[i] += ',';
      AppendArrayElement(&arrays[i], read.getColumn(static_cast<int>(i)), t.columns[i].pg_type);
    }
    if (++in_batch == batch_rows) flush();
  }
  flush();
  if (copied == 0 && options.progress) options.progress(t.name, 0, total);
  return copied;
}

// Moves every identity sequence of `t` past the largest copied value.
void AdvanceSequences(pqxx::transaction_base& tx, const Table& t) {
  for (const Column& c : t.columns) {
    const pqxx::result seq =
        tx.exec_params("SELECT pg_get_serial_sequence($1, $2)", QuoteIdent(t.name), c.name);
    if (seq.empty() || seq[0][0].is_null()) continue;
    tx.exec_params(absl::StrCat("SELECT setval($1, COALESCE(MAX(", QuoteIdent(c.name),
                                "), 0) + 1, false) FROM ", QuoteIdent(t.name)),
                   seq[0][0].c_str());
  }
}

absl::StatusOr<int> SourceSchemaVersion(SQLite::Database& db) {
  if (!db.tableExists("schema_migrations")) {
    return absl::FailedPreconditionError(
        "the source is not a DataSync index (no schema_migrations)");
  }
  SQLite::Statement q(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  q.executeStep();
  return q.getColumn(0).getInt();
}

}  // namespace

absl::StatusOr<MigrateIndexReport> MigrateIndex(const std::string& from_url,
                                                const std::string& to_url,
                                                const MigrateIndexOptions& options) {
  if (from_url.rfind("sqlite:", 0) != 0) {
    return absl::InvalidArgumentError("--from must be sqlite:PATH (the index to copy)");
  }
  if (to_url.rfind("postgresql://", 0) != 0 && to_url.rfind("postgres://", 0) != 0) {
    return absl::InvalidArgumentError(
        "--to must be postgresql://USER@HOST:PORT/DB (an empty PostgreSQL database)");
  }
  const std::string path = from_url.substr(7);
  std::error_code ec;
  if (path.empty() || !std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no SQLite index at '", path, "'"));
  }
  const std::string password = ConninfoPassword(to_url);
  const int latest = kSqliteMigrations.empty() ? 0 : kSqliteMigrations.back().version;

  // The target gets the current schema the ordinary way (advisory-locked, recorded).
  {
    DS_ASSIGN_OR_RETURN(std::unique_ptr<StateIndex> target, OpenStateIndex(to_url));
    DS_RETURN_IF_ERROR(target->Migrate());
    DS_ASSIGN_OR_RETURN(const int version, target->SchemaVersion());
    if (version != latest) {
      return absl::FailedPreconditionError(
          absl::StrCat("target schema is v", version, ", this binary writes v", latest));
    }
  }

  std::string stage = "opening the source";
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    DS_ASSIGN_OR_RETURN(const int source_version, SourceSchemaVersion(db));
    if (source_version != latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the source index is at schema v", source_version, " and this binary copies v", latest,
          source_version < latest
              ? ": start this version of datasync-server once on it (it migrates at start-up), "
                "stop it, then migrate"
              : ": use the datasync-server that wrote it"));
    }
    // One read transaction: every table comes from the same snapshot.
    SQLite::Transaction snapshot(db);

    stage = "connecting to the target";
    pqxx::connection conn(to_url);
    pqxx::work tx(conn);
    tx.exec("SET LOCAL client_min_messages = warning");
    stage = "reading the target's catalog";
    DS_ASSIGN_OR_RETURN(std::vector<Table> tables, InForeignKeyOrder(tx, TargetTables(tx)));
    DS_RETURN_IF_ERROR(MatchSourceColumns(db, tables));
    // No server may write while the copy runs (nor see it before the commit).
    std::vector<std::string> quoted;
    for (const Table& t : tables) quoted.push_back(QuoteIdent(t.name));
    stage = "locking the target's tables";
    tx.exec(absl::StrCat("LOCK TABLE ", absl::StrJoin(quoted, ", "), " IN EXCLUSIVE MODE"));
    for (const Table& t : tables) {
      if (IsSeeded(t.name)) continue;
      if (tx.exec(absl::StrCat("SELECT EXISTS (SELECT 1 FROM ", QuoteIdent(t.name), ")"))[0][0]
              .as<bool>()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the target already holds DataSync data (table ", t.name,
                         " has rows); migrate-index only fills a fresh, empty database"));
      }
    }

    MigrateIndexReport report;
    report.schema_version = latest;
    for (const Table& t : tables) {
      stage = absl::StrCat("copying table ", t.name);
      int64_t expected = 0;
      {
        SQLite::Statement count(db, absl::StrCat("SELECT COUNT(*) FROM ", QuoteIdent(t.name)));
        count.executeStep();
        expected = count.getColumn(0).getInt64();
      }
      if (IsSeeded(t.name)) tx.exec(absl::StrCat("DELETE FROM ", QuoteIdent(t.name)));
      const int64_t copied = CopyTable(db, tx, t, expected, options);
      AdvanceSequences(tx, t);
      const int64_t landed =
          tx.exec(absl::StrCat("SELECT COUNT(*) FROM ", QuoteIdent(t.name)))[0][0].as<int64_t>();
      if (copied != expected || landed != expected) {
        return absl::InternalError(absl::StrCat("table ", t.name, ": the source has ", expected,
                                                " rows, ", copied, " were read and ", landed,
                                                " landed; nothing was committed"));
      }
      report.tables.emplace_back(t.name, landed);
    }
    stage = "committing";
    tx.commit();
    return report;
  } catch (const SQLite::Exception& e) {
    return absl::InternalError(absl::StrCat(stage, ": SQLite: ", e.what()));
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(absl::StrCat(stage, ": PostgreSQL at ", RedactIndexUrl(to_url),
                                               " unavailable: ", ScrubPassword(e.what(), password)));
  } catch (const pqxx::sql_error& e) {
    // The first line only: DETAIL lines may quote row values (key hashes).
    std::string what = e.what();
    return absl::InternalError(
        absl::StrCat(stage, ": PostgreSQL: ", ScrubPassword(what.substr(0, what.find('\n')), password),
                     "; nothing was committed"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(stage, ": ", ScrubPassword(e.what(), password)));
  }
}

}  // namespace ds
