import Mocha from 'mocha';

/** mocha's spec output, plus a closing line CI reads: "N passed, N failed, N skipped". */
class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once('end', () => {
      const s = runner.stats;
      if (s) console.log(`\ntests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`);
    });
  }
}

export = SpecWithSummary;
