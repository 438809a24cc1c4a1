;; The content search's literal prefilter (see literal-search.ts): is a literal
;; anywhere in a chunk of a file? Node's Buffer.indexOf scans about 3.6 GB/s on
;; text with a common first letter; this scans at memory speed, 32 bytes per
;; step. Compiled by `npm run gen` (wabt) into literal-search.wasm.gen.ts.
;;
;; The scan (a "packed pair" filter, as in Rust's memchr::memmem or W. Mula's
;; SIMD substring search): compare 32 candidate starts at once on two chosen
;; bytes of the literal (its rarest, at offsets $p1 and $p2), and check the
;; whole literal only where both agree.
(module
  (import "env" "memory" (memory 1))

  ;; find(hay, n, lit, k, p1, p2): the offset in hay[0, n) of the first copy of
  ;; lit[0, k), or -1. p1 and p2 are offsets into the literal (< k). Reads up to
  ;; 31 bytes past hay + n, which the caller keeps inside the memory.
  (func (export "find")
    (param $hay i32) (param $n i32) (param $lit i32) (param $k i32) (param $p1 i32) (param $p2 i32)
    (result i32)
    (local $i i32) (local $last i32) (local $at1 i32) (local $at2 i32)
    (local $b1 v128) (local $b2 v128) (local $mask i32) (local $pos i32) (local $j i32)
    (if (i32.or (i32.lt_s (local.get $k) (i32.const 1)) (i32.gt_s (local.get $k) (local.get $n)))
      (then (return (i32.const -1))))
    (local.set $b1 (i8x16.splat (i32.load8_u (i32.add (local.get $lit) (local.get $p1)))))
    (local.set $b2 (i8x16.splat (i32.load8_u (i32.add (local.get $lit) (local.get $p2)))))
    ;; The last offset a copy may start at.
    (local.set $last (i32.sub (local.get $n) (local.get $k)))
    (local.set $at1 (i32.add (local.get $hay) (local.get $p1)))
    (local.set $at2 (i32.add (local.get $hay) (local.get $p2)))
    (block $scanned
      (loop $step
        (br_if $scanned (i32.gt_s (local.get $i) (local.get $last)))
        ;; Bit s of $mask: the start i + s has both chosen bytes right.
        (local.set $mask
          (i32.or
            (i8x16.bitmask (v128.and
              (i8x16.eq (v128.load (i32.add (local.get $at1) (local.get $i))) (local.get $b1))
              (i8x16.eq (v128.load (i32.add (local.get $at2) (local.get $i))) (local.get $b2))))
            (i32.shl
              (i8x16.bitmask (v128.and
                (i8x16.eq (v128.load offset=16 (i32.add (local.get $at1) (local.get $i))) (local.get $b1))
                (i8x16.eq (v128.load offset=16 (i32.add (local.get $at2) (local.get $i))) (local.get $b2))))
              (i32.const 16))))
        (if (local.get $mask)
          (then
            ;; Starts past $last read beyond the chunk: not candidates.
            (if (i32.lt_s (i32.sub (local.get $last) (local.get $i)) (i32.const 31))
              (then
                (local.set $mask
                  (i32.and (local.get $mask)
                    (i32.sub
                      (i32.shl (i32.const 1) (i32.add (i32.sub (local.get $last) (local.get $i)) (i32.const 1)))
                      (i32.const 1))))))
            (block $none
              (loop $candidate
                (br_if $none (i32.eqz (local.get $mask)))
                (local.set $pos (i32.add (local.get $i) (i32.ctz (local.get $mask))))
                (local.set $j (i32.const 0))
                (block $differs
                  (loop $compare
                    (if (i32.ge_u (local.get $j) (local.get $k)) (then (return (local.get $pos))))
                    (br_if $differs
                      (i32.ne
                        (i32.load8_u (i32.add (i32.add (local.get $hay) (local.get $pos)) (local.get $j)))
                        (i32.load8_u (i32.add (local.get $lit) (local.get $j)))))
                    (local.set $j (i32.add (local.get $j) (i32.const 1)))
                    (br $compare)))
                ;; Drop the lowest candidate, try the next.
                (local.set $mask (i32.and (local.get $mask) (i32.sub (local.get $mask) (i32.const 1))))
                (br $candidate)))))
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br $step)))
    (i32.const -1)))
