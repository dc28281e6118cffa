"""The movie-poster dataset as distributed: `train.csv` with `Id`, `Genre` (the genres as list
text, e.g. "['Comedy', 'Drama']") and one 0/1 column per genre (read from the header: 25 in the
original), and posters at `Images/<Id>.jpg`."""

from __future__ import annotations

import ast
import csv
from pathlib import Path


def parse_genre_text(text: str) -> list[str]:
    """"['Comedy', 'Drama']" -> ['Comedy', 'Drama']; ValueError for anything else."""
    value = ast.literal_eval(text.strip())
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of genre names")
    return [v.strip() for v in value]


def read_posters(data: Path):
    """Rows (line number, poster path, genre indices), the genres in column order, and a report."""
    table = data / "train.csv"
    if not table.is_file():
        raise SystemExit(f"{data} has no train.csv: expected the poster dataset as distributed")
    report = {"malformed_rows": [], "genre_mismatch": [], "missing_images": []}
    rows = []
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "Id" not in header or "Genre" not in header:
            raise SystemExit(f"{table}: the header must name Id, Genre and one 0/1 column per genre; got {header}")
        id_col, genre_col = header.index("Id"), header.index("Genre")
        genre_cols = [i for i in range(len(header)) if i not in (id_col, genre_col)]
        genres = [header[i].strip() for i in genre_cols]
        if not genres:
            raise SystemExit(f"{table}: no genre columns in the header")
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                report["malformed_rows"].append(f"line {line}: {len(fields)} fields, the header has {len(header)}")
                continue
            flags = [fields[i].strip() for i in genre_cols]
            if any(flag not in ("0", "1") for flag in flags):
                report["malformed_rows"].append(f"line {line}: genre columns must be 0 or 1")
                continue
            from_columns = [g for g, flag in zip(genres, flags) if flag == "1"]
            try:
                from_text = parse_genre_text(fields[genre_col])
            except (ValueError, SyntaxError):
                report["genre_mismatch"].append(f"line {line}: Genre text {fields[genre_col]!r} is not a list")
            else:
                if sorted(from_text) != sorted(from_columns):
                    report["genre_mismatch"].append(f"line {line}: Genre says {from_text}, the 0/1 columns say {from_columns}")
            poster = data / "Images" / f"{fields[id_col].strip()}.jpg"
            if not poster.is_file():
                report["missing_images"].append(f"line {line}: Images/{poster.name}")
                continue
            if not from_columns:
                report["malformed_rows"].append(f"line {line}: no genre set")
                continue
            rows.append((line, poster, [genres.index(g) for g in from_columns]))
    return rows, genres, report
