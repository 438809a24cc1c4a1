// The longest run of plain characters every match of a regular expression
// must contain — what grep calls a "must" string. A file chunk without it
// cannot hold a matching line, so the line matcher skips such chunks with one
// native byte search instead of decoding and scanning them. Conservative: any
// construct it does not understand ends a run, and alternation, case folding
// or a non-ASCII pattern give no literal at all.

const META = new Set([..."\\^$.|?*+()[]{}"]);
/** Escapes of punctuation stand for the character itself; escapes of letters and digits are classes or anchors. */
const PLAIN_ESCAPE = /^[^A-Za-z0-9]$/;
const MIN_LENGTH = 3;

export function requiredLiteral(re: RegExp): string | undefined {
  if (re.flags.includes("i")) return undefined;
  const src = re.source;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (!/^[\x00-\x7f]*$/.test(src)) return undefined;
  const runs: string[] = [];
  let run = "";
  let depth = 0;
  let inClass = false;
  const end = () => {
    runs.push(run);
    run = "";
  };
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (inClass) {
      if (c === "\\") i++;
      else if (c === "]") inClass = false;
      continue;
    }
    if (c === "\\") {
      const next = src[i + 1] ?? "";
      i++;
      // \x7f, \u0041, \cA, \k<n>, \012, \d…: several characters or a class; rather than parse them, no literal.
      if (!PLAIN_ESCAPE.test(next)) return undefined;
      if (depth === 0 && !optionalNext(src, i)) run += next;
      else end();
      continue;
    }
    if (c === "{") {
      // A counted repetition: its digits are not text. Skip to its end.
      end();
      const close = src.indexOf("}", i);
      if (close < 0) return undefined;
      i = close;
      continue;
    }
    if (c === "[") {
      inClass = true;
      end();
      continue;
    }
    if (c === "(") {
      depth++;
      end();
      continue;
    }
    if (c === ")") {
      depth--;
      end();
      continue;
    }
    if (c === "|" && depth === 0) return undefined;
    if (META.has(c) || depth > 0) {
      end();
      continue;
    }
    // A quantifier after this character may make it optional or repeat it: it ends the run, without it.
    if (optionalNext(src, i)) end();
    else run += c;
  }
  end();
  const best = runs.reduce((a, b) => (b.length > a.length ? b : a), "");
  return best.length >= MIN_LENGTH ? best : undefined;
}

function optionalNext(src: string, i: number): boolean {
  const n = src[i + 1];
  return n === "?" || n === "*" || n === "+" || n === "{";
}
