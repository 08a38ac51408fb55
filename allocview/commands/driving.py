"""`drive`: generated operations in the guest and in the reference
allocator side by side (inferior calls from gdb, or over gdb/MI from the
CLI's --gdb). The front end provides the guest; the session is shared."""

from __future__ import annotations

from allocview.model.mixes import MIXES, mix_help

from . import CommandError, Result, arg, command


@command("drive", "Run the allocator side by side with the design's, in the guest.",
         "Generated operations go to the guest (inferior calls of its entry points) and to "
         "the reference allocator; the touched state is compared after every one (all of it "
         "every 100). Drive goes on past each departure from the design (the model takes "
         "the guest's state; after a call that hung or reached abort/exit, its frame is "
         "unwound and both restart from the start state), groups departures into distinct "
         "defects, and shrinks each to a minimal sequence written as PREFIX-N.jsonl (for "
         "`replay`), PREFIX-N.jsonl.start.elf and PREFIX-N.c (the calls for a test). "
         "WRITES GUEST MEMORY: asks first (gdb honours `set confirm`), or --yes; the "
         "allocator's start state is restored at the end unless --keep.",
         arg("--ops", type=int, default=500, metavar="N", help="operations to generate"),
         arg("--seed", type=int, default=1, metavar="S", help="the generator's seed"),
         arg("--mix", default="default", choices=list(MIXES),
             help="what the operations favour: " + mix_help()),
         arg("--dontzero", action="store_true",
             help="every allocation with FLAG_DONTZERO: a block handed out while in use is "
                  "reported, not zeroed under the guest (which can take it down)"),
         arg("--no-fresh", action="store_true",
             help="no FLAG_FRESH: look past a FRESH path that takes the guest down"),
         arg("--first", action="store_true",
             help="stop at the first departure (files PREFIX.jsonl, .start.elf, .c)"),
         arg("--console", metavar="FILE", complete="file",
             help="the file the guest's console goes to (QEMU -serial file:FILE): what a "
                  "dying call printed is reported"),
         arg("--area", nargs="+", default=[], metavar="AREA", complete="area",
             help="restrict allocations to these areas (slot numbers or names)"),
         arg("--mode", default="exact", choices=["exact", "relaxed"],
             help="exact: list order too; relaxed: lists as sets"),
         arg("--known", metavar="FILE", complete="file",
             help="accepted difference kinds, one per line"),
         arg("--out", default="alloc-drive", metavar="PREFIX", help="reproducer files' prefix"),
         arg("--no-shrink", action="store_true", help="keep the whole failing sequence"),
         arg("--keep", action="store_true", help="leave the guest in the state it reached"),
         arg("--force", action="store_true", help="drive from a state that breaks the design"),
         arg("--call-timeout", type=float, default=2.0, metavar="SECONDS",
             help="how long one call may take before it counts as hanging"),
         arg("--yes", action="store_true", help="do not ask before writing guest memory"),
         writes=True)
def run_drive(ctx, args) -> Result:
    from allocview.model.assess import assess
    from allocview.model.check import check, errors
    from allocview.model.drive_io import drive_session, drive_words, lock_held, read_known
    from allocview.model.mixes import generate

    from .. import render
    from ..dumpwrite import write_elf_dump

    if args.ops < 0 or not args.call_timeout > 0:
        raise CommandError("--ops must be 0 or more, --call-timeout more than 0 seconds")
    accepted = read_known(args.known)
    start, image, prog = ctx.drive_start()
    unchecked = assess(start)
    if unchecked is not None:
        raise CommandError(f"nothing to drive: {unchecked.reason}")
    if errors(check(start)) and not args.force:
        raise CommandError("the allocator already breaks the design here (see `check`); drive "
                           "from an earlier state, or --force")
    if lock_held(image, prog):
        raise CommandError("the allocator's lock is held (the guest stopped inside the "
                           "allocator): every call would spin; stop it elsewhere")
    if not args.yes and not ctx.confirm("drive calls the guest's allocator and writes guest "
                                        "memory. Go on?"):
        return Result(None, render.Doc().line("allocview: not driven"))
    ops = generate(args.seed, args.ops, start.layout, start, mix=args.mix,
                   area_bits=start.layout.area_bits(args.area), names=prog.symbols,
                   dontzero=args.dontzero, fresh=not args.no_fresh)
    ctx.progress(f"driving {len(ops)} operations (seed {args.seed}, mix {args.mix}, "
                 f"{args.mode} compare)")
    header = {"arch": prog.arch, "format": start.layout.format, "areas": prog.areas_addr,
              "areas_mask": prog.mask_addr, "source": "allocview drive", "seed": args.seed}
    with ctx.drive_guest(args.call_timeout, args.console) as guest:
        out = drive_session(guest, start, image, ops, mode=args.mode, accepted=accepted,
                            shrink_it=not args.no_shrink, prefix=args.out, header=header,
                            write_dump=lambda p, img: write_elf_dump(p, img, arch=prog.arch,
                                                                      partial=True),
                            decode_end=ctx.decode_now, keep=args.keep, first=args.first,
                            progress=lambda k: k % 100 or ctx.progress(f"  {k} ops"),
                            say=ctx.progress)
    doc = render.Doc()
    for w in drive_words(out):
        doc.line(w)
    return Result(out, doc, 1 if out["defects"] else 2 if out.get("gone") else 0)
