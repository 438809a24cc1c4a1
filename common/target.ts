import { BlockList, isIP } from "node:net";
import { RE2JS } from "re2js";
import { parseDuration } from "./duration.js";
import { Codes, DragnetError } from "./errors.js";

// The target language (DESIGN.md, "Target expressions"): a small expression
// over agent attributes, parsed here so the console can validate it before
// signing and the coordinator (and agents) can evaluate it. It is evaluated in
// memory, never pasted into SQL.
//
//   expr    := or
//   or      := and ("or" and)*
//   and     := unary ("and" unary)*
//   unary   := "not" unary | primary
//   primary := "(" expr ")" | "all" | "isolated" | "matched" "(" id ")" | field op value
//   field   := id | hostname | os | arch | version | status | ip | seen | isolated | tags.<key>
//   op      := == | != | ~ | !~ | < | <= | > | >= | in
//   value   := "quoted string" | 'quoted string' | bare word (linux, 10.0.0.0/8, 5m, 1.2.0)
//
// Regular expressions (~, !~) are RE2's (re2js): they match in time linear in
// the text, so no pattern one investigator signs can hang an agent (a
// backtracking engine takes minutes over "^([0-9a-z]+)+!").

/** A compiled `~` pattern: found anywhere in the value. */
export interface TargetRegex {
  test(value: string): boolean;
}

const MAX_REGEX = 512;

export class TargetParseError extends DragnetError {
  override name = "TargetParseError";
  constructor(
    readonly position: number,
    readonly detail: string,
    readonly expression: string,
  ) {
    super(Codes.TARGET_PARSE, `target expression: ${detail} at position ${position + 1}`);
  }

  /** The expression with a caret under the offending position, for terminals. */
  pointer(): string {
    return `  ${this.expression}\n  ${" ".repeat(this.position)}^`;
  }
}

type Op = "==" | "!=" | "~" | "!~" | "<" | "<=" | ">" | ">=" | "in";

export type TargetExpr =
  | { kind: "all" }
  | { kind: "and"; left: TargetExpr; right: TargetExpr }
  | { kind: "or"; left: TargetExpr; right: TargetExpr }
  | { kind: "not"; expr: TargetExpr }
  | { kind: "isolated"; value: boolean }
  | { kind: "matched"; actionId: string }
  | {
      kind: "text";
      field: TextField;
      tag?: string;
      op: "==" | "!=" | "~" | "!~";
      value: string;
      regex?: TargetRegex;
    }
  | { kind: "version"; op: Op; value: string; regex?: TargetRegex }
  | { kind: "ip"; op: "in" | "==" | "!="; value: string; net: BlockList }
  | { kind: "seen"; op: "<" | "<=" | ">" | ">="; ms: number };

type TextField = "id" | "hostname" | "os" | "arch" | "status" | "tags";

/** What a target is evaluated against. */
export interface TargetSubject {
  id: string;
  hostname: string;
  os: string;
  arch: string;
  version: string;
  addresses: readonly string[];
  tags: Readonly<Record<string, string>>;
  isolated: boolean;
  /** Coordinator-side only: last heartbeat time and status (online, idle, offline). */
  lastSeenMs?: number;
  status?: string;
}

export interface TargetContext {
  now: number;
  /** Agents whose result for an action found something (coordinator-side). */
  matched?: (actionId: string) => ReadonlySet<string> | undefined;
}

interface Token {
  type: "word" | "string" | "op" | "(" | ")";
  text: string;
  pos: number;
}

const WORD_RE = /[A-Za-z0-9_.:/*+-]/;

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")") {
      tokens.push({ type: c, text: c, pos: i });
      i++;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (two === "==" || two === "!=" || two === "!~" || two === "<=" || two === ">=") {
      tokens.push({ type: "op", text: two, pos: i });
      i += 2;
      continue;
    }
    if (c === "~" || c === "<" || c === ">") {
      tokens.push({ type: "op", text: c, pos: i });
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const start = i;
      let value = "";
      i++;
      for (;;) {
        if (i >= src.length) throw new TargetParseError(start, "unterminated string", src);
        const ch = src[i]!;
        if (ch === c) {
          i++;
          break;
        }
        if (ch === "\\" && i + 1 < src.length) {
          const next = src[i + 1]!;
          value += next === "n" ? "\n" : next === "t" ? "\t" : next;
          i += 2;
          continue;
        }
        value += ch;
        i++;
      }
      tokens.push({ type: "string", text: value, pos: start });
      continue;
    }
    if (WORD_RE.test(c)) {
      const start = i;
      while (i < src.length && WORD_RE.test(src[i]!)) i++;
      tokens.push({ type: "word", text: src.slice(start, i), pos: start });
      continue;
    }
    throw new TargetParseError(i, `unexpected character ${JSON.stringify(c)}`, src);
  }
  return tokens;
}

const TEXT_FIELDS = new Set(["id", "hostname", "os", "arch", "status"]);
const MAX_EXPRESSION_LENGTH = 4096;
const MAX_DEPTH = 64;

class Parser {
  private i = 0;
  private depth = 0;
  constructor(
    private readonly src: string,
    private readonly tokens: Token[],
  ) {}

  parse(): TargetExpr {
    if (this.tokens.length === 0)
      throw new TargetParseError(0, "the expression is empty (use `all`)", this.src);
    const expr = this.or();
    const extra = this.tokens[this.i];
    if (extra)
      throw this.error(extra, `unexpected ${JSON.stringify(extra.text)}; expected "and", "or" or the end`);
    return expr;
  }

  private peek(): Token | undefined {
    return this.tokens[this.i];
  }

  private next(expected: string): Token {
    const t = this.tokens[this.i];
    if (!t)
      throw new TargetParseError(this.src.length, `expected ${expected} but the expression ended`, this.src);
    this.i++;
    return t;
  }

  private error(t: Token, detail: string): TargetParseError {
    return new TargetParseError(t.pos, detail, this.src);
  }

  private isWord(t: Token | undefined, word: string): boolean {
    return t?.type === "word" && t.text === word;
  }

  private or(): TargetExpr {
    let left = this.and();
    while (this.isWord(this.peek(), "or")) {
      this.i++;
      left = { kind: "or", left, right: this.and() };
    }
    return left;
  }

  private and(): TargetExpr {
    let left = this.unary();
    while (this.isWord(this.peek(), "and")) {
      this.i++;
      left = { kind: "and", left, right: this.unary() };
    }
    return left;
  }

  private unary(): TargetExpr {
    if (++this.depth > MAX_DEPTH)
      throw this.error(this.peek() ?? this.tokens.at(-1)!, "the expression nests too deeply");
    try {
      if (this.isWord(this.peek(), "not")) {
        this.i++;
        return { kind: "not", expr: this.unary() };
      }
      return this.primary();
    } finally {
      this.depth--;
    }
  }

  private primary(): TargetExpr {
    const t = this.next("a condition");
    if (t.type === "(") {
      const expr = this.or();
      const close = this.next('")"');
      if (close.type !== ")")
        throw this.error(close, `expected ")" to close the "(" at position ${t.pos + 1}`);
      return expr;
    }
    if (t.type !== "word") throw this.error(t, `expected a condition, found ${JSON.stringify(t.text)}`);
    switch (t.text) {
      case "all":
        return { kind: "all" };
      case "matched":
        return this.matched(t);
      case "isolated": {
        const op = this.peek();
        if (op?.type !== "op") return { kind: "isolated", value: true };
        return this.comparison(t);
      }
      default:
        return this.comparison(t);
    }
  }

  private matched(t: Token): TargetExpr {
    const open = this.next('"("');
    if (open.type !== "(") throw this.error(open, 'expected "(" after matched');
    const id = this.next("an action id");
    if (id.type !== "word" && id.type !== "string") throw this.error(id, "expected an action id");
    if (!/^[0-9a-z]{4,64}$/i.test(id.text)) throw this.error(id, `"${id.text}" is not an action id`);
    const close = this.next('")"');
    if (close.type !== ")") throw this.error(close, 'expected ")" after the action id');
    void t;
    return { kind: "matched", actionId: id.text.toLowerCase() };
  }

  private comparison(fieldTok: Token): TargetExpr {
    const name = fieldTok.text;
    const opTok = this.next(`an operator after "${name}"`);
    const isIn = opTok.type === "word" && opTok.text === "in";
    if (opTok.type !== "op" && !isIn) {
      throw this.error(opTok, `expected an operator (==, !=, ~, !~, <, >, in) after "${name}"`);
    }
    const op = opTok.text as Op;
    const valueTok = this.next(`a value after "${op}"`);
    if (valueTok.type !== "word" && valueTok.type !== "string") {
      throw this.error(valueTok, `expected a value after "${op}"`);
    }
    const value = valueTok.text;
    const allow = (ops: readonly Op[]) => {
      if (!ops.includes(op)) {
        throw this.error(opTok, `"${name}" takes ${ops.join(", ")}, not ${op}`);
      }
    };
    const regexOf = (): TargetRegex | undefined => {
      if (op !== "~" && op !== "!~") return undefined;
      if (value.length > MAX_REGEX) {
        throw this.error(valueTok, `a regular expression of at most ${MAX_REGEX} characters`);
      }
      try {
        return RE2JS.compile(value);
      } catch (err) {
        throw this.error(valueTok, `invalid regular expression (RE2 syntax): ${(err as Error).message}`);
      }
    };

    if (TEXT_FIELDS.has(name) || name.startsWith("tags.")) {
      allow(["==", "!=", "~", "!~"]);
      const tag = name.startsWith("tags.") ? name.slice(5) : undefined;
      if (tag !== undefined && !/^[A-Za-z0-9_.-]+$/.test(tag)) {
        throw this.error(fieldTok, `"${tag}" is not a valid tag name`);
      }
      return {
        kind: "text",
        field: tag === undefined ? (name as TextField) : "tags",
        tag,
        op: op as "==" | "!=" | "~" | "!~",
        value,
        regex: regexOf(),
      };
    }
    switch (name) {
      case "version":
        allow(["==", "!=", "~", "!~", "<", "<=", ">", ">="]);
        if (op !== "~" && op !== "!~" && !/^\d+(\.\d+){0,2}([-+].*)?$/.test(value)) {
          throw this.error(valueTok, `"${value}" is not a version (like 1.2.0)`);
        }
        return { kind: "version", op, value, regex: regexOf() };
      case "ip":
        allow(["in", "==", "!="]);
        return { kind: "ip", op: op as "in" | "==" | "!=", value, net: this.network(valueTok, op === "in") };
      case "seen": {
        allow(["<", "<=", ">", ">="]);
        let ms: number;
        try {
          ms = parseDuration(value);
        } catch {
          throw this.error(valueTok, `"${value}" is not a duration (like 30s, 5m, 2h)`);
        }
        return { kind: "seen", op: op as "<" | "<=" | ">" | ">=", ms };
      }
      case "isolated":
        allow(["==", "!="]);
        if (value !== "true" && value !== "false")
          throw this.error(valueTok, "isolated compares with true or false");
        return { kind: "isolated", value: (value === "true") === (op === "==") };
      default:
        throw this.error(
          fieldTok,
          `unknown attribute "${name}" (known: all, id, hostname, os, arch, version, status, ip, seen, isolated, tags.<name>, matched(<action>))`,
        );
    }
  }

  private network(t: Token, cidr: boolean): BlockList {
    const list = new BlockList();
    const [addr, prefixText] = t.text.split("/");
    const family = isIP(addr ?? "");
    if (!family) throw this.error(t, `"${t.text}" is not an IP address${cidr ? " or CIDR" : ""}`);
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefixText === undefined) {
      list.addAddress(addr!, type);
      return list;
    }
    if (!cidr) throw this.error(t, `use "in" to compare with a network (${t.text})`);
    const prefix = Number(prefixText);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
      throw this.error(t, `"${prefixText}" is not a valid prefix length`);
    }
    list.addSubnet(addr!, prefix, type);
    return list;
  }
}

export function parseTarget(src: string): TargetExpr {
  if (src.length > MAX_EXPRESSION_LENGTH) {
    throw new TargetParseError(
      MAX_EXPRESSION_LENGTH,
      `the expression is longer than ${MAX_EXPRESSION_LENGTH} characters`,
      src.slice(0, 80),
    );
  }
  return new Parser(src, tokenize(src)).parse();
}

/** Compares dotted numeric versions; a pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const [core = "", pre] = v.split(/-(.*)/s, 2);
    const nums = core
      .split("+")[0]!
      .split(".")
      .map((n) => Number.parseInt(n, 10) || 0);
    while (nums.length < 3) nums.push(0);
    return { nums, pre };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < 3; i++) {
    const d = x.nums[i]! - y.nums[i]!;
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}

function compareOrdered(d: number, op: Op): boolean {
  switch (op) {
    case "==":
      return d === 0;
    case "!=":
      return d !== 0;
    case "<":
      return d < 0;
    case "<=":
      return d <= 0;
    case ">":
      return d > 0;
    case ">=":
      return d >= 0;
    default:
      return false;
  }
}

export function evaluateTarget(expr: TargetExpr, agent: TargetSubject, ctx: TargetContext): boolean {
  switch (expr.kind) {
    case "all":
      return true;
    case "and":
      return evaluateTarget(expr.left, agent, ctx) && evaluateTarget(expr.right, agent, ctx);
    case "or":
      return evaluateTarget(expr.left, agent, ctx) || evaluateTarget(expr.right, agent, ctx);
    case "not":
      return !evaluateTarget(expr.expr, agent, ctx);
    case "isolated":
      return agent.isolated === expr.value;
    case "matched":
      return ctx.matched?.(expr.actionId)?.has(agent.id) ?? false;
    case "text": {
      const actual = expr.field === "tags" ? agent.tags[expr.tag!] : agent[expr.field];
      if (actual === undefined) return expr.op === "!=" || expr.op === "!~";
      switch (expr.op) {
        case "==":
          return actual === expr.value;
        case "!=":
          return actual !== expr.value;
        case "~":
          return expr.regex!.test(actual);
        case "!~":
          return !expr.regex!.test(actual);
      }
      return false;
    }
    case "version":
      if (expr.regex) return expr.regex.test(agent.version) === (expr.op === "~");
      return compareOrdered(compareVersions(agent.version, expr.value), expr.op);
    case "ip": {
      const hit = agent.addresses.some((a) => {
        const family = isIP(a);
        return family !== 0 && expr.net.check(a, family === 4 ? "ipv4" : "ipv6");
      });
      return expr.op === "!=" ? !hit : hit;
    }
    case "seen": {
      if (agent.lastSeenMs === undefined) return false;
      const age = ctx.now - agent.lastSeenMs;
      return compareOrdered(Math.sign(age - expr.ms), expr.op);
    }
  }
}

/** Action ids a target depends on through matched(...). */
export function matchedActionIds(expr: TargetExpr): string[] {
  switch (expr.kind) {
    case "and":
    case "or":
      return [...matchedActionIds(expr.left), ...matchedActionIds(expr.right)];
    case "not":
      return matchedActionIds(expr.expr);
    case "matched":
      return [expr.actionId];
    default:
      return [];
  }
}

/**
 * Whether an agent, judging by what it knows of itself, may be among the
 * agents an expression selects. Only the coordinator knows `seen`, `status`
 * and `matched(...)`; the agent treats them as unknown and, with three-valued
 * logic, refuses only an action whose target certainly excludes it.
 */
export function targetMayInclude(expr: TargetExpr, self: TargetSubject): boolean {
  return evaluateKnown(expr, self) !== false;
}

function evaluateKnown(expr: TargetExpr, self: TargetSubject): boolean | undefined {
  switch (expr.kind) {
    case "and": {
      const l = evaluateKnown(expr.left, self);
      const r = evaluateKnown(expr.right, self);
      if (l === false || r === false) return false;
      return l === true && r === true ? true : undefined;
    }
    case "or": {
      const l = evaluateKnown(expr.left, self);
      const r = evaluateKnown(expr.right, self);
      if (l === true || r === true) return true;
      return l === false && r === false ? false : undefined;
    }
    case "not": {
      const v = evaluateKnown(expr.expr, self);
      return v === undefined ? undefined : !v;
    }
    case "matched":
    case "seen":
      return undefined;
    case "text":
      if (expr.field === "status") return undefined;
      return evaluateTarget(expr, self, { now: Date.now() });
    default:
      return evaluateTarget(expr, self, { now: Date.now() });
  }
}
