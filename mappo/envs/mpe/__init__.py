"""The built-in MPE tasks (`spread`, `reference`, `speaker_listener`): mpe2's scenarios
vectorized in torch on one physics core (`mpe_core`) and one task frame (`mpe_task`), step for
step equal to mpe2's envs."""
