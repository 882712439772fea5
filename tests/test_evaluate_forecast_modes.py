"""What the loop plans the weather and intensity on: recorded, defaulted and checked."""

import pytest

from coolshift.control.evaluation import default_weather_forecast, evaluate_policies
from coolshift.io import load_site_data


def test_weather_forecast_defaults_to_model_except_with_perfect_information():
    assert default_weather_forecast("model") == "model"
    assert default_weather_forecast("issued") == "model"
    assert default_weather_forecast("noise5") == "model"
    assert default_weather_forecast("perfect") == "perfect"


def test_the_weather_mode_is_recorded_and_changes_the_plans(small_site_model):
    site, model = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    history = load_site_data(site, "2022-05-24", "2022-06-14")
    perfect = evaluate_policies(site, data, ["coolshift"], model, "perfect")
    forecast = evaluate_policies(site, data, ["coolshift"], model, "perfect", weather_forecast="model", history=history)
    assert perfect["weather_forecast"] == "perfect" and forecast["weather_forecast"] == "model"
    assert "perfect" in forecast["oracle_information"]
    # planned on another weather: other setpoints, another facility energy (the plant is the same simulator)
    assert forecast["policies"]["coolshift"]["facility_kwh"] != perfect["policies"]["coolshift"]["facility_kwh"]


def test_unknown_weather_mode_and_issued_without_forecasts_are_errors(small_site_model):
    site, model = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    with pytest.raises(ValueError, match="weather forecast"):
        evaluate_policies(site, data, ["coolshift"], model, "model", weather_forecast="psychic")
    with pytest.raises(ValueError, match="issued intensity forecasts"):
        evaluate_policies(site, data, ["coolshift"], model, "issued")
